"""Segmented partial sums: how every Lloyd kernel adds a chunk's rows into per-centre sums.

A chunk's rows are cut into segments of :func:`segment_rows` rows (from its first row). The
weighted sum of each centre's rows is accumulated per segment, row by row in row order from
zero, and the chunk's sums are the segments' sums added in segment order
(:func:`add_segment`). Every kernel does exactly this (the plain one, the sweep's fused one,
the bounds-pruned one), so their partials agree bit for bit.

Why segments: a segment whose rows all kept their centre has the same sums as in the last
iteration, bit for bit. The bounds-pruned E-step (:mod:`.bounds`) keeps every segment's sums
with its state and adds only the rows of the centres whose membership changed in a segment
(:func:`resum`); the rows whose bounds hold are not read at all. A segment's sums take
``8 (d + 1) k`` bytes, and :func:`segment_rows` makes that at most 8 bytes per row.
Numba only below the size rule.
"""

from __future__ import annotations

from numba import njit

from .bounds_rows import FLAGS

__all__ = ["SEGMENT_BYTES_PER_ROW", "add_segment", "resum", "segment_rows"]

#: the tiles the kernels work in (rows); every segment is a whole number of them
TILE_ROWS = 1024
#: the most bytes per row a segment's sums may take (``8 (d + 1) k / segment_rows``)
SEGMENT_BYTES_PER_ROW = 8


def segment_rows(k: int, d: int) -> int:
    """Rows per segment for ``k`` centres of ``d`` features: whole tiles, enough of them that
    the segment's sums (``8 (d + 1) k`` bytes) take at most :data:`SEGMENT_BYTES_PER_ROW`
    bytes per row (adding them to the chunk's costs at most one addition per row)."""
    per = 8 * (d + 1) * k
    tiles = -(-per // (SEGMENT_BYTES_PER_ROW * TILE_ROWS))
    return TILE_ROWS * max(1, tiles)


@njit(nogil=True, cache=True)
def add_segment(sums, wsum, ss, sw):
    # the chunk's sums += one segment's, element by element (no reassociation: each element
    # is one addition, the same wherever it runs)
    k, d = sums.shape
    for j in range(k):
        for c in range(d):
            sums[j, c] += ss[j, c]
        wsum[j] += sw[j]


@njit(nogil=True, cache=True)
def clear(ss, sw):
    ss[:, :] = 0.0
    sw[:] = 0.0


@njit(nogil=True, cache=True, fastmath=FLAGS)
def resum(X, s0, s1, labels, w, has_w, ss, sw, pick, stamp):
    # the segment X[s0:s1]'s sums of the centres j with pick[j] == stamp (stamp < 0: every
    # centre), from zero, row by row in row order: the plain kernel's statements
    # (lloyd._assign_tile), so the same values bit for bit
    d = X.shape[1]
    k = ss.shape[0]
    for j in range(k):
        if stamp < 0 or pick[j] == stamp:
            for c in range(d):
                ss[j, c] = 0.0
            sw[j] = 0.0
    for row in range(s0, s1):
        bj = labels[row]
        if stamp >= 0 and pick[bj] != stamp:
            continue
        wi = w[row] if has_w else 1.0
        for t in range(d):
            ss[bj, t] += wi * X[row, t]
        sw[bj] += wi
