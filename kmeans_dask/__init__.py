"""kmeans-dask: distributed k-means segmentation over Dask.

Public API::

    from kmeans_dask import KMeans, KNeighborsScorer, StandardScaler
"""

from .exceptions import (
    ConvergenceWarning,
    InputError,
    InvalidParameterError,
    KMeansDaskError,
    KMeansDaskWarning,
)
from .kmeans import KMeans
from .knn import KNeighborsScorer
from .lloyd import IterationStats
from .scale import StandardScaler

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "InputError",
    "InvalidParameterError",
    "IterationStats",
    "KMeans",
    "KMeansDaskError",
    "KMeansDaskWarning",
    "KNeighborsScorer",
    "StandardScaler",
    "__version__",
]
