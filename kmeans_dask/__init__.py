"""kmeans-dask: distributed k-means segmentation over Dask.

Public API::

    from kmeans_dask import KMeans, KNeighborsScorer, StandardScaler, sweep_k
    from kmeans_dask import worker_settings   # wrap your own LocalCluster in it
"""

from importlib import import_module
from typing import Any

# The public names are imported on first use (PEP 562): a Dask worker unpickling a task from
# kmeans_dask.engine imports this package, and must not pay for scikit-learn (~70 MB per
# worker process) or the estimators it never runs.
_LAZY = {
    "IterationStats": "engine.lloyd",
    "KMeans": "kmeans",
    "KNeighborsScorer": "knn",
    "StandardScaler": "scale",
    "SweepResult": "sweep",
    "sweep_k": "sweep",
    "worker_settings": "engine.workers",
    **dict.fromkeys(
        [
            "ConfigError",
            "ConvergenceWarning",
            "DatasetError",
            "InputError",
            "InputTypeError",
            "InvalidParameterError",
            "KMeansDaskError",
            "KMeansDaskWarning",
            "MemoryBudgetError",
            "StorageError",
        ],
        "exceptions",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConvergenceWarning",
    "DatasetError",
    "InputError",
    "InputTypeError",
    "InvalidParameterError",
    "IterationStats",
    "KMeans",
    "KMeansDaskError",
    "KMeansDaskWarning",
    "KNeighborsScorer",
    "MemoryBudgetError",
    "StandardScaler",
    "StorageError",
    "SweepResult",
    "__version__",
    "sweep_k",
    "worker_settings",
]
