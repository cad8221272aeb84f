"""Arrow columns into the rows of a block: the transposition every read of a partition into
a row-major feature array does (``parts.read_array_part``), compiled.

numpy's per-column copies into a tile of rows (``strip[:, j] = column``) wrote each row's
cache line once per column and paid a call per column and tile: 37 ms for 131,072 rows x 64
float64 columns (67 MB) here, where a plain copy of the same bytes takes 8 ms. The kernel
walks the same cache-sized tiles, eight columns at a time, so a row's cache line is filled
while it stays in L1.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.typed import List

__all__ = ["fill_rows"]

#: rows of a tile: 512 rows x 8 columns of float64 are 32 KiB of the block (L1)
TILE = 512
#: columns written together (a 64-byte cache line of float64 rows)
GROUP = 8


@njit(nogil=True, cache=True)
def _columns_into_rows(cols, out, row, sums):  # pragma: no cover - compiled
    m = cols[0].shape[0]
    d = len(cols)
    for t0 in range(0, m, TILE):
        t1 = min(m, t0 + TILE)
        for j0 in range(0, d, GROUP):
            for j in range(j0, min(d, j0 + GROUP)):
                c = cols[j]
                s = 0.0
                for i in range(t0, t1):
                    out[row + i, j] = c[i]
                    s += out[row + i, j]  # the stored value: inf where a cast overflowed
                sums[j] += s


def fill_rows(arrays: list[np.ndarray], out: np.ndarray, row: int, sums: np.ndarray) -> bool:
    """``out[row + i, j] = arrays[j][i]`` for every column ``j`` (cast to ``out``'s dtype,
    beyond float32's range to inf), adding each column's stored values into ``sums[j]`` (a
    finiteness check: only whether the sum is finite matters). Returns False, doing nothing,
    when the columns are not all of one floating dtype (the caller copies them itself)."""
    if not arrays or out.dtype.kind != "f":
        return False
    dtype = arrays[0].dtype
    if dtype.kind != "f" or any(
        a.dtype != dtype or a.ndim != 1 or not a.flags.c_contiguous for a in arrays
    ):
        return False
    _columns_into_rows(List([_readonly(a) for a in arrays]), out, row, sums)
    return True


def _readonly(a: np.ndarray) -> np.ndarray:
    # one array type for the typed list: Arrow's zero-copy views are read-only, the copies
    # made for columns with nulls are not
    view = a.view()
    view.flags.writeable = False
    return view
