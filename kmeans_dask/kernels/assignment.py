"""Assigning a chunk of rows to fitted centres (numpy/numba; no Dask): the per-chunk work
behind ``KMeans.predict``/``transform``/``score`` and the job's assignment files."""

from __future__ import annotations

import numpy as np

from . import lloyd as kernels

__all__ = ["apply_centres"]


def apply_centres(X: np.ndarray, func: str, C: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-chunk result of assigning rows to fitted centres: ``'predict'`` (labels),
    ``'min_sq_dist'`` (exact squared distance to the nearest centre) or ``'transform'``
    (Euclidean distance to every centre). ``ref`` is the training mean (see
    :class:`kernels.CentreSet`)."""
    X = np.ascontiguousarray(X, dtype=C.dtype)
    if func == "transform":
        # shifted to the training mean: no cancellation on data far from the origin
        shift = ref.astype(C.dtype)
        return np.sqrt(kernels.sq_distances(X - shift, C - shift)).astype(C.dtype)
    if not np.isfinite(X).all():
        raise ValueError("Input X contains NaN or infinity.")
    labels, mind, _ = kernels.assign(X, kernels.CentreSet(C, ref))
    return labels if func == "predict" else mind
