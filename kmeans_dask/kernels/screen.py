"""A float32 screen for the float64 argmin of the plain Lloyd kernel, exact to the bit.

The plain kernel (:func:`kernels.lloyd._assign_tile`) takes, for every row ``x``, the first
index of the minimum of ``v_j = bias_j - 2 x.c'_j`` (``c' = c - mu``, a float64 BLAS product
of the tile by the shifted centres). In float64 that product is most of the kernel, and a
float32 product runs at twice its speed here. The screen computes every row's values in
float32 instead, *centred* (``z = x - mu``, so data far from the origin loses nothing)::

    w_j = ||c'_j||^2 - 2 z.c'_j            (= v_j in exact arithmetic)

with the centres' products laid out ``(k, rows)`` so the best and second-best value of
every row are kept in loops the compiler vectorises across rows (the plain kernel's loop
runs along a row, one branch per centre).

Exactness. For a row, ``|w_j - W_j| <= E_s = 2 (d + 4) eps32 ||z|| R + 2 eps32 R^2`` and
``|v_j - W_j| <= E_p = 2 (d + 2) eps64 ||x|| R + 64 d eps64 (||x|| + R + ||mu||)^2``, with
``W_j`` the exact value and ``R = max_j ||c'_j||`` (the float32 product's rounding, in any
summation order, with the rounding of ``z``, ``c'`` and ``||c'||^2`` to float32 and of the
subtraction; the plain kernel's as in :mod:`.bounds`; both with a factor of 2 to spare;
``||x|| <= ||z|| + ||mu||``). When the row's best ``w_b`` beats every other value by more than
``2 (E_s + E_p)``, every ``v_j`` exceeds ``v_b``: ``b`` is the plain kernel's argmin whatever
its rounding or tie rule. A row that fails (a near-tie, an exact tie) gets its values in
float64, centred, one row at a time (error below ``E_p``), accepted when its gap exceeds
``4 E_p``; the rare row that fails that too takes the plain kernel's own product and loop for
its tile. Labels, hence partial sums, centres, inertia and every iteration, are the plain
kernel's bit for bit. Rows whose values could overflow float32 (``||z|| R`` or ``R^2``
above ``1e30``) always fail the screen; the kernel stops screening a chunk whose rows keep
failing it (:data:`MAX_FAIL_SHARE`).

Float64 data with ``k >= SCREEN_MIN_K`` centres only (measured below that at d = 32, the
conversion costs more than the product saves; float32 data has no cheaper product).
Numba below the argument builders.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .segments import TILE_ROWS

__all__ = [
    "MAX_FAIL_SHARE", "SCREEN_MIN_K", "no_screen", "screen_args", "screen_buffers", "screen_tile",
    "tile_products",
]

#: the fewest centres for which float64 data is screened in float32 (one thread, 1M x 32
#: overlapping blobs: the screened kernel took 1.13x the plain one's time at k = 8, 0.96x
#: at k = 12, 0.57x at k = 64, 0.43x at k = 256)
SCREEN_MIN_K = 12
#: a chunk stops screening once more than this share of its rows so far failed the screen
#: (their float64 values cost more than the screen saves)
MAX_FAIL_SHARE = 1.0 / 16
# float32 overflow guard for ||z|| R and R^2 (float32 max ~3.4e38)
_OVERFLOW = 1e30
_EPS32 = float(np.finfo(np.float32).eps)
_EPS64 = float(np.finfo(np.float64).eps)


def screen_args(centres: np.ndarray, reference: np.ndarray, shifted: np.ndarray) -> tuple:
    """The screen's arguments for float64 ``centres`` shifted by ``reference`` (``shifted =
    centres - reference``, the plain kernel's own float64 values): ``(use, mu, c'_32 (k, d),
    c' (k, d), ||c'||^2 in float32, ||c'||^2, constants)``. ``use`` is False where the
    screen does not pay or cannot hold (:data:`SCREEN_MIN_K`, float32 data, overflow)."""
    k, d = shifted.shape
    sq = np.einsum("ij,ij->i", shifted, shifted)
    R = float(np.sqrt(sq.max())) if k else 0.0
    mu = np.ascontiguousarray(reference, dtype=np.float64)
    if not (centres.dtype == np.float64 and k >= SCREEN_MIN_K and R * R < _OVERFLOW):
        return no_screen(k, d)
    consts = np.array([
        R,
        float(np.sqrt(mu @ mu)),
        2.0 * (d + 4) * _EPS32,   # E_s per ||z|| R
        2.0 * _EPS32,             # E_s per R^2
        2.0 * (d + 2) * _EPS64,   # E_p per ||x|| R
        64.0 * d * _EPS64,        # E_p per (||x|| + R + ||mu||)^2
    ])
    return (
        True, mu, np.ascontiguousarray(shifted, dtype=np.float32),
        np.ascontiguousarray(shifted, dtype=np.float64), sq.astype(np.float32), sq, consts,
    )


def no_screen(k: int, d: int) -> tuple:
    """Arguments of the screen's types that turn it off (float32 data, the sweep's kernel)."""
    return (
        False, np.zeros(d), np.zeros((k, d), np.float32), np.zeros((k, d)),
        np.zeros(k, np.float32), np.zeros(k), np.zeros(6),
    )


@njit(nogil=True, cache=True)
def screen_buffers(use, k, d):
    """Work arrays of one kernel call: ``(z tile, products (k, rows) flat: see
    :func:`tile_products`, ||z||, best, second, label, settled, rows tried / failed)`` (empty
    when ``use`` is False)."""
    m = TILE_ROWS if use else 0
    return (
        np.empty((m, d), dtype=np.float32), np.empty((k if use else 0) * m, dtype=np.float32),
        np.empty(m), np.empty(m, dtype=np.float32), np.empty(m, dtype=np.float32),
        np.empty(m, dtype=np.int32), np.empty(m, dtype=np.bool_), np.zeros(2, dtype=np.int64),
    )


# Reassociation vectorises the conversion, the norms and the row loops; the bounds above hold
# for any summation order.
_FLAGS = {"reassoc", "contract", "nsz", "arcp"}


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _fill(X, start, m, mu, Z, nz):
    # z = x - mu of the tile's rows in float32, and ||z|| (float64)
    d = X.shape[1]
    for i in range(m):
        s = 0.0
        for t in range(d):
            z = X[start + i, t] - mu[t]
            Z[i, t] = np.float32(z)
            s += z * z
        nz[i] = np.sqrt(s)


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _best_two(P, m, sq32, b1, b2, lab):
    # per row (column of P): the first minimum of w_j = sq32[j] - 2 P[j, i], and the second
    # best value; centre by centre over all rows, selects only (vectorised across rows)
    k = P.shape[0]
    for i in range(m):
        b1[i] = np.float32(np.inf)
        b2[i] = np.float32(np.inf)
        lab[i] = 0
    for j in range(k):
        s = sq32[j]
        for i in range(m):
            v = s - np.float32(2.0) * P[j, i]
            lt = v < b1[i]
            o = b1[i]
            b2[i] = o if lt else (v if v < b2[i] else b2[i])
            b1[i] = v if lt else o
            lab[i] = j if lt else lab[i]


@njit(nogil=True, cache=True)
def _plain_bound(nz, consts):
    # E_p for a row with ||x - mu|| = nz (||x|| <= nz + ||mu||)
    R, nmu = consts[0], consts[1]
    nx = nz + nmu
    return consts[4] * nx * R + consts[5] * (nx + R + nmu) ** 2


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _row64(X, row, mu, C64, sq, lab, i, nz, consts):
    # the row's values in float64, centred, one centre at a time; True (and lab[i] set) when
    # the best beats the second by more than 4 E_p
    k, d = C64.shape
    b1 = np.inf
    b2 = np.inf
    bj = 0
    for j in range(k):
        s = 0.0
        for t in range(d):
            s += (X[row, t] - mu[t]) * C64[j, t]
        v = sq[j] - 2.0 * s
        if v < b1:
            b2 = b1
            b1 = v
            bj = j
        elif v < b2:
            b2 = v
    if b2 - b1 > 4.0 * _plain_bound(nz, consts):
        lab[i] = bj
        return True
    return False


@njit(nogil=True, cache=True)
def tile_products(sb, k, m):
    """The float32 products of a tile of ``m`` rows in the buffers ``sb``: ``(k, m)``,
    contiguous for any ``m`` (what :func:`screen_tile` computes and leaves there)."""
    return sb[1][:k * m].reshape((k, m))


@njit(nogil=True, cache=True)
def screen_tile(X, start, m, sc, sb):
    """Labels of the tile's rows ``start .. start + m`` into ``sb[5][:m]``, settled ones marked
    in ``sb[6]``; returns how many rows are left to the plain kernel's product."""
    _, mu, C32, C64, sq32, sq, consts = sc
    Z, _, nz, b1, b2, lab, ok, stat = sb
    P = tile_products(sb, C32.shape[0], m)
    _fill(X, start, m, mu, Z, nz)
    np.dot(C32, Z[:m].T, P)
    _best_two(P, m, sq32, b1, b2, lab)
    R = consts[0]
    left = 0
    failed = 0
    for i in range(m):
        e = consts[2] * nz[i] * R + consts[3] * R * R + _plain_bound(nz[i], consts)
        good = nz[i] * R < _OVERFLOW and np.float64(b2[i]) - np.float64(b1[i]) > 2.0 * e
        if not good:
            failed += 1
            good = _row64(X, start + i, mu, C64, sq, lab, i, nz[i], consts)
        ok[i] = good
        left += 0 if good else 1
    stat[0] += m
    stat[1] += failed
    return left
