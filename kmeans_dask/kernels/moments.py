"""Per-chunk moments (count, mean, M2, non-finite counts) and Chan et al.'s parallel merge.

numpy and numba only. One compiled two-pass loop per chunk; the merge is exact in the sense
of the parallel variance formula, so merging chunk moments equals a single pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["merge_moments", "moments"]


@njit(nogil=True, cache=True)
def _moments_kernel(X, total, m2, n_nan, n_inf, n_ok):
    n, d = X.shape
    for i in range(n):  # pass 1: finite sums and non-finite counts
        for t in range(d):
            v = X[i, t]
            if np.isnan(v):
                n_nan[t] += 1
            elif np.isinf(v):
                n_inf[t] += 1
            else:
                total[t] += v
                n_ok[t] += 1
    mean = total / np.maximum(n_ok, 1)
    for i in range(n):  # pass 2: squared deviations from the exact chunk mean
        for t in range(d):
            v = X[i, t]
            if np.isfinite(v):
                e = np.float64(v) - mean[t]
                m2[t] += e * e
    return mean


def moments(X: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column count, mean, sum of squared deviations (M2) and NaN / inf counts of a chunk.

    Non-finite values are excluded from the mean and M2 and counted separately, so that a
    caller can name the offending column. One compiled two-pass loop, no temporaries.

    Returns
    -------
    n : int
        Number of rows.
    mean, m2 : ndarray of shape (d,), float64
    n_nan, n_inf : ndarray of shape (d,), int64
    """
    n, d = X.shape
    total = np.zeros(d)
    m2 = np.zeros(d)
    n_nan = np.zeros(d, dtype=np.int64)
    n_inf = np.zeros(d, dtype=np.int64)
    n_ok = np.zeros(d, dtype=np.int64)
    if n == 0:
        return 0, np.zeros(d), m2, n_nan, n_inf
    mean = _moments_kernel(np.ascontiguousarray(X), total, m2, n_nan, n_inf, n_ok)
    return n, mean, m2, n_nan, n_inf


def merge_moments(
    a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray]
) -> tuple[int, np.ndarray, np.ndarray]:
    """Merge two (count, mean, M2) triples with Chan et al.'s parallel formula."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    if na == 0:
        return nb, mb, sb
    if nb == 0:
        return na, ma, sa
    delta = mb - ma
    mean = ma + delta * (nb / n)
    m2 = sa + sb + delta * delta * (na * nb / n)
    return n, mean, m2
