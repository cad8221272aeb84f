"""Clustering metrics as map-reduce over chunks (no row is gathered to the caller)."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np

__all__ = ["adjusted_rand_score", "contingency_matrix"]


def _pair_counts(a: np.ndarray, b: np.ndarray, n_b: int, size: int) -> np.ndarray:
    return np.bincount(a.astype(np.int64) * n_b + b.astype(np.int64), minlength=size)


def _range(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    if a.size == 0:
        return 0, -1, -1
    return int(min(a.min(), b.min())), int(a.max()), int(b.max())


def contingency_matrix(labels_a: Any, labels_b: Any) -> np.ndarray:
    """Counts of every (label_a, label_b) pair, shape (max_a + 1, max_b + 1).

    Labels are non-negative integers (numpy or dask arrays of the same length).
    """
    a = da.asarray(labels_a)
    b = da.asarray(labels_b)
    if a.shape != b.shape:
        raise ValueError(f"labels have different shapes: {a.shape} and {b.shape}.")
    b = b.rechunk(a.chunks)
    # one graph style for both passes (unoptimised), so keys never clash between submissions
    pa = a.to_delayed(optimize_graph=False).ravel()
    pb = b.to_delayed(optimize_graph=False).ravel()
    ranges = dask.compute(*[dask.delayed(_range)(x, y) for x, y in zip(pa, pb, strict=True)])
    lo = min(r[0] for r in ranges)
    if lo < 0:
        raise ValueError("labels must be non-negative integers.")
    n_a = int(max(r[1] for r in ranges)) + 1
    n_b = int(max(r[2] for r in ranges)) + 1
    task = dask.delayed(_pair_counts, pure=True)
    parts = [task(x, y, n_b, n_a * n_b) for x, y in zip(pa, pb, strict=True)]
    total = np.sum(dask.compute(*parts), axis=0)  # small histograms, one per chunk
    return total.reshape(n_a, n_b)


def _comb2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x * (x - 1) / 2


def adjusted_rand_score(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from a map-reduced contingency table.

    Equals :func:`sklearn.metrics.adjusted_rand_score` on the same labels.
    """
    c = contingency_matrix(labels_true, labels_pred)
    n = c.sum()
    sum_comb = _comb2(c).sum()
    sum_a = _comb2(c.sum(axis=1)).sum()
    sum_b = _comb2(c.sum(axis=0)).sum()
    expected = sum_a * sum_b / _comb2(n) if n > 1 else 0.0
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:  # both labelings trivial (one cluster, or all singletons)
        return 1.0
    return float((sum_comb - expected) / (maximum - expected))
