"""Layer 3, the job as plain Python: the config schema, the pipeline stages (plan -> read ->
scale -> sweep -> fit -> assign -> score -> commit), the result tables, the portable
segmentation model and the demo data. Runs without Prefect; ``flows/`` wraps it.

``load_model(run_uri)`` reloads the model of a committed run (imported on first use, so that
``import kmeans_dask.job.config`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .segmentation_model import SegmentationModel, load_model

__all__ = ["SegmentationModel", "load_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import segmentation_model

        return getattr(segmentation_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
