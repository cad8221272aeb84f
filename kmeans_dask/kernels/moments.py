"""Per-chunk moments (count, mean, M2, non-finite counts, largest absolute values, smallest
and largest values) and Chan et al.'s parallel merge.

numpy and numba only. One compiled two-pass loop per chunk; the merge is exact in the sense
of the parallel variance formula, so merging chunk moments equals a single pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["merge_moments", "moments", "moments_and_range"]


@njit(nogil=True, cache=True)
def _moments_kernel(X, total, m2, n_nan, n_inf, n_ok, max_abs, lo, hi):
    n, d = X.shape
    for i in range(n):  # pass 1: finite sums, largest |value|, non-finite counts
        for t in range(d):
            v = X[i, t]
            if np.isnan(v):
                n_nan[t] += 1
            elif np.isinf(v):
                n_inf[t] += 1
            else:
                total[t] += v
                n_ok[t] += 1
                f = np.float64(v)
                a = abs(f)
                if a > max_abs[t]:
                    max_abs[t] = a
                if f < lo[t]:
                    lo[t] = f
                if f > hi[t]:
                    hi[t] = f
    mean = total / np.maximum(n_ok, 1)
    for i in range(n):  # pass 2: squared deviations from the exact chunk mean
        for t in range(d):
            v = X[i, t]
            if np.isfinite(v):
                e = np.float64(v) - mean[t]
                m2[t] += e * e
    return mean


def moments(
    X: np.ndarray,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column count, mean, sum of squared deviations (M2), NaN / inf counts and largest
    absolute finite value of a chunk.

    Non-finite values are excluded from the mean, M2 and the largest value and counted
    separately, so that a caller can name the offending column. One compiled two-pass loop,
    no temporaries.

    Returns
    -------
    n : int
        Number of rows.
    mean, m2 : ndarray of shape (d,), float64
    n_nan, n_inf : ndarray of shape (d,), int64
    max_abs : ndarray of shape (d,), float64
        Largest finite ``|value|`` per column (0 for an empty chunk).
    """
    return moments_and_range(X)[:6]


def moments_and_range(
    X: np.ndarray,
) -> tuple[
    int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:
    """:func:`moments` and, in the same compiled pass, the smallest and largest finite value
    of each column (``+inf`` / ``-inf`` for a column without finite values).

    Returns
    -------
    n, mean, m2, n_nan, n_inf, max_abs
        As :func:`moments`.
    lo, hi : ndarray of shape (d,), float64
        Smallest and largest finite value per column.
    """
    n, d = X.shape
    total = np.zeros(d)
    m2 = np.zeros(d)
    n_nan = np.zeros(d, dtype=np.int64)
    n_inf = np.zeros(d, dtype=np.int64)
    n_ok = np.zeros(d, dtype=np.int64)
    max_abs = np.zeros(d)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    if n == 0:
        return 0, np.zeros(d), m2, n_nan, n_inf, max_abs, lo, hi
    mean = _moments_kernel(
        np.ascontiguousarray(X), total, m2, n_nan, n_inf, n_ok, max_abs, lo, hi
    )
    return n, mean, m2, n_nan, n_inf, max_abs, lo, hi


def merge_moments(
    a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray]
) -> tuple[int, np.ndarray, np.ndarray]:
    """Merge two (count, mean, M2) triples with Chan et al.'s parallel formula.

    Values too large to square give inf/NaN here, without a warning (as in the compiled
    per-chunk pass); callers refuse such data by the largest absolute values.
    """
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    if na == 0:
        return nb, mb, sb
    if nb == 0:
        return na, ma, sa
    with np.errstate(over="ignore", invalid="ignore"):
        delta = mb - ma
        mean = ma + delta * (nb / n)
        m2 = sa + sb + delta * delta * (na * nb / n)
    return n, mean, m2
