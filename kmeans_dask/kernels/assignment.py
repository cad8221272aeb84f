"""Assigning a chunk of rows to fitted centres (numpy/numba; no Dask): the per-chunk work
behind ``KMeans.predict``/``transform``/``score`` and the job's assignment files.

Inputs are validated by the caller (finite, 2-D, numeric); ``ref`` is the training mean that
the distance products are shifted by (see :class:`~kmeans_dask.kernels.lloyd.CentreSet`).
"""

from __future__ import annotations

import numpy as np

from .lloyd import CentreSet, assign, sq_distances

__all__ = ["assign_rows", "centre_distances", "nearest_labels", "nearest_sq_distances"]


def assign_rows(X: np.ndarray, C: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every row (int32) and the exact squared distance to it (float64)."""
    X = np.ascontiguousarray(X, dtype=C.dtype)
    labels, mind, _ = assign(X, CentreSet(C, ref))
    return labels, mind


def nearest_labels(X: np.ndarray, C: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Nearest centre of every row (``KMeans.predict`` on one chunk)."""
    return assign_rows(X, C, ref)[0]


def nearest_sq_distances(X: np.ndarray, C: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact squared distance of every row to its nearest centre (``KMeans.score``)."""
    return assign_rows(X, C, ref)[1]


def centre_distances(X: np.ndarray, C: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row to every centre (``KMeans.transform``).

    Both sides are shifted to the training mean first: no cancellation on data far from the
    origin.
    """
    X = np.ascontiguousarray(X, dtype=C.dtype)
    shift = ref.astype(C.dtype)
    return np.sqrt(sq_distances(X - shift, C - shift)).astype(C.dtype)
