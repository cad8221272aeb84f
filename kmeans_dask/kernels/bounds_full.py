"""A tile of the bounds-pruned E-step recomputed from the float32 screen (see
:mod:`kmeans_dask.kernels.bounds` for the bounds, :mod:`.screen` for the screen).

Every row of the tile gets its label, its exact distance and all its bounds, as
:func:`.bounds_kernel._full_tile` gives them from the plain float64 product, but from the
screen's float32 values ``w_j`` (error at most ``E_s`` each, :mod:`.screen`) once the screen
settled every row of the tile: the labels are then the plain kernel's, and a true lower
bound needs only the larger error. With ``W_j`` the exact values and ``s`` the exact distance
to the label ``a``::

    ||x - c_j||^2 = W_j + ||x - mu||^2 = W_j + s - W_a >= w_j + s - w_a - 2 E_s

so the group bounds are ``sqrt(min_g w + s - w_a - 3 e)`` with ``e = E_s + E_p`` (the same
form as the float64 tile's, whose values carry ``E_p``). The group minima are taken centre by
centre across the tile's rows (selects only: vectorised), so are the group bounds (their
square roots), group by group; the rest row by row with the plain kernel's statements (sums,
inertia), so partials and inertia are bit for bit the plain kernel's. Numba only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bounds_rows import FLAGS, down32, up32
from .screen import tile_products

__all__ = ["full_screened", "group_minima"]

# the screen's overflow guard (:mod:`.screen`): beyond it the float32 values mean nothing
_OVERFLOW = 1e30


@njit(nogil=True, cache=True, fastmath=FLAGS)
def group_minima(P, m, sq32, lab, members, gstart, gm):
    """Per group ``g`` and row ``i`` of the tile (column of ``P``), the least float32 value
    ``sq32[j] - 2 P[j, i]`` over the group's centres but the row's label, into ``gm[g, i]``
    (the screen's statement, so the same rounding and error bound)."""
    t = gstart.shape[0] - 1
    inf = np.float32(np.inf)
    for g in range(t):
        for i in range(m):
            gm[g, i] = inf
        for idx in range(gstart[g], gstart[g + 1]):
            j = members[idx]
            s = sq32[j]
            for i in range(m):
                v = s - np.float32(2.0) * P[j, i]
                v = inf if lab[i] == j else v
                gm[g, i] = v if v < gm[g, i] else gm[g, i]


@njit(nogil=True, cache=True, fastmath=FLAGS)
def full_screened(X, start, m, sc, sb, gm, C, labels, lower, upper, p, w, has_w, ss, sw, pick,
                  stamp, inertia):
    """Every row of the tile ``start .. start + m`` from the screen's values, every row of it
    settled by the screen (labels in ``sb``): as ``_full_tile`` (labels, exact distances,
    upper and group bounds; a full pass (``stamp < 0``) adds the rows to the segment's sums
    ``ss``, ``sw``, else the centres a row left or joined are marked in ``pick``). Returns the
    inertia."""
    _, _, _, _, sq32, _, consts = sc
    _, _, nz, _, _, lab, _, _ = sb
    P = tile_products(sb, sq32.shape[0], m)
    (_, _, group_of, gcum, acum, _, _, _, _, members, gstart, ocum) = p
    d = X.shape[1]
    t = lower.shape[1]
    group_minima(P, m, sq32, lab, members, gstart, gm)
    R, nmu = consts[0], consts[1]
    base = np.empty(m)
    mine = np.empty(m, dtype=np.float32)
    for i in range(m):
        row = start + i
        bj = lab[i]
        wi = w[row] if has_w else 1.0
        s = 0.0
        for c in range(d):
            diff = np.float64(X[row, c]) - np.float64(C[bj, c])
            s += diff * diff
        if stamp < 0:
            for c in range(d):
                ss[bj, c] += wi * X[row, c]
            sw[bj] += wi
        else:
            a = labels[row]
            if a != bj:
                pick[a] = stamp
                pick[bj] = stamp
        inertia += wi * s
        labels[row] = bj
        du = np.sqrt(s) * (1.0 + 1e-9)
        upper[row] = up32(du - ocum[bj])
        # the row's error: the screen's E_s and the plain kernel's E_p (its bound, as in
        # the screen: ||x|| <= ||z|| + ||mu||)
        nx = nz[i] + nmu
        e = (consts[2] * nz[i] * R + consts[3] * R * R + consts[4] * nx * R
             + consts[5] * (nx + R + nmu) * (nx + R + nmu))
        wa = sq32[bj] - np.float32(2.0) * P[bj, i]
        b = (s - np.float64(wa)) * (1.0 - 1e-9) - 3.0 * e
        if not nz[i] * R < _OVERFLOW:
            b = -np.inf  # the float32 values overflowed: bounds of 0 (still bounds)
        base[i] = b
        # the row's own group is read against its centre's own cumulative drift
        lo = np.sqrt(max(np.float64(gm[group_of[bj], i]) + b, 0.0)) * (1.0 - 1e-9)
        mine[i] = down32(lo + acum[bj])
    # the other groups' bounds across the rows, group by group (vectorised: the square
    # roots are most of a full pass's cost beyond the plain kernel's), in place in gm
    for g in range(t):
        add = gcum[g]
        for i in range(m):
            lo = np.sqrt(max(np.float64(gm[g, i]) + base[i], 0.0)) * (1.0 - 1e-9)
            gm[g, i] = down32(lo + add)
    for i in range(m):
        row = start + i
        for g in range(t):
            lower[row, g] = gm[g, i]
        lower[row, group_of[lab[i]]] = mine[i]
    return inertia
