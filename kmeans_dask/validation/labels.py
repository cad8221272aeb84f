"""The labels (or regression target) of a KNN reference set, checked at the boundary:
one value per reference row, as a 1-D numpy or dask array, classes encoded as codes."""

from __future__ import annotations

from typing import Any

import dask
import numpy as np

from ..exceptions import InputError
from .data import is_dask_array, is_dask_frame

__all__ = ["as_vector", "codes_block", "encode_labels", "known_rows", "n_nonfinite", "unique"]


def as_vector(y: Any, owner: str) -> Any:
    """``y`` as a 1-D numpy or dask array (dask Series become arrays with known lengths)."""
    import pandas as pd

    if is_dask_frame(y):
        y = y.to_dask_array(lengths=True)
    elif isinstance(y, pd.Series | pd.DataFrame):
        y = y.to_numpy()
    elif not is_dask_array(y):
        y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(
            f"The 'y' parameter of {owner}.fit must be 1-D (one label or target per "
            f"reference row). Got shape {y.shape} instead."
        )
    return y


def known_rows(X: Any) -> int | None:
    if is_dask_frame(X):
        return None
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    return None if isinstance(n, float) and np.isnan(n) else int(n)


def encode_labels(y: Any, owner: str) -> tuple[np.ndarray, Any, type]:
    """Sorted classes (one small pass for dask input) and the labels as class codes."""
    if is_dask_array(y):
        import dask.array as da

        # unoptimised, like the label parts persisted next: one run_spec per key
        (classes,) = dask.compute(da.unique(y), optimize_graph=False)
        classes = np.unique(classes)
        codes = y.map_blocks(codes_block, classes, dtype=np.int64)
    else:
        classes, codes = np.unique(y, return_inverse=True)
    if classes.dtype.kind == "f" and np.isnan(classes).any():
        raise InputError(f"{owner}: y contains NaN; every reference row needs a label.")
    return classes, codes, np.int64


def codes_block(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, y).astype(np.int64)


def unique(y: np.ndarray) -> np.ndarray:
    return np.unique(y)


def n_nonfinite(y: np.ndarray) -> int:
    return int((~np.isfinite(y)).sum())
