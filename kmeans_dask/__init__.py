"""kmeans-dask: distributed k-means segmentation over Dask.

Public API::

    from kmeans_dask import KMeans, KNeighborsScorer, StandardScaler, sweep_k
"""

from .engine.lloyd import IterationStats
from .exceptions import (
    ConfigError,
    ConvergenceWarning,
    DatasetError,
    InputError,
    InputTypeError,
    InvalidParameterError,
    KMeansDaskError,
    KMeansDaskWarning,
    StorageError,
)
from .kmeans import KMeans
from .knn import KNeighborsScorer
from .scale import StandardScaler
from .sweep import SweepResult, sweep_k

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
    "StandardScaler",
    "StorageError",
    "SweepResult",
    "__version__",
    "sweep_k",
]
