"""Row primitives shared by the bounds kernels (:mod:`.bounds_kernel`, :mod:`.bounds_local`):
the exact distance, float32 rounding down, the error bounds. Numba only."""

from __future__ import annotations

import numpy as np
from numba import njit

FLAGS = {"reassoc", "contract", "nsz", "arcp"}  # the plain kernel's flags (same accumulation)


@njit(nogil=True, cache=True, fastmath=FLAGS)
def sq_to(X, row, C, j, d):
    s = 0.0
    for t in range(d):
        diff = np.float64(X[row, t]) - np.float64(C[j, t])
        s += diff * diff
    return s


@njit(nogil=True, cache=True)
def down32(x):
    # x rounded down to float32 (a lower bound stays a lower bound): shrunk by 2^-22 first,
    # more than float32's relative rounding (2^-24); 0 for non-positive, subnormal or NaN
    # values, at most 3.4e38 (below float32's largest); selects, no branches (it runs t times
    # a row when the bounds are rebuilt)
    y = min(x * (1.0 - 2.384185791015625e-07), 3.4e38)
    return np.float32(y if x > 1e-37 else 0.0)


@njit(nogil=True, cache=True)
def errors(xn, margin, margin64, radius, err, err64, i):
    # error bounds of the plain kernel's values (err) and of float64 ones (err64) for a row
    # of norm at most xn
    err64[i] = margin64 * (xn + radius) * (xn + radius)
    err[i] = margin * xn + err64[i]


@njit(nogil=True, cache=True)
def up32(x):
    # x rounded up to float32 (an upper bound stays an upper bound): moved up by 2^-22 of
    # its size and by 1e-37 first (more than float32's relative rounding, 2^-24, and its
    # smallest spacing), at most 3.4e38 (inf beyond: such a bound never settles a row), at
    # least -3.4e38 (a bound less a cumulative drift beyond float32's range would round to
    # -inf: raising it keeps it an upper bound)
    y = max(x + abs(x) * 2.384185791015625e-07 + 1e-37, -3.4e38)
    return np.float32(y) if y <= 3.4e38 else np.float32(np.inf)
