"""The compiled pass of the bounds-pruned E-step (see :mod:`kmeans_dask.kernels.bounds` for the
algorithm and the exactness argument). Inputs already validated; numba only."""

from __future__ import annotations

import numpy as np
from numba import njit

from .lloyd import BLOCK_ROWS

_FLAGS = {"reassoc", "contract", "nsz", "arcp"}  # the plain kernel's flags (same accumulation)


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _sq_to(X, row, C, j, d):
    s = 0.0
    for t in range(d):
        diff = np.float64(X[row, t]) - np.float64(C[j, t])
        s += diff * diff
    return s


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _sq_from(X, row, ref, d):
    # ||x - mu||^2 in float64 (any order: it enters the bounds only, with a relative pad)
    s = 0.0
    for t in range(d):
        diff = np.float64(X[row, t]) - ref[t]
        s += diff * diff
    return s


@njit(nogil=True, cache=True)
def _down32(x):
    # x rounded down to float32 (a lower bound stays a lower bound): shrunk by 2^-22 first,
    # more than float32's relative rounding (2^-24); 0 for non-positive, subnormal or NaN
    # values, at most 3.4e38 (below float32's largest); selects, no branches (it runs t times
    # a row when the bounds are rebuilt)
    y = min(x * (1.0 - 2.384185791015625e-07), 3.4e38)
    return np.float32(y if x > 1e-37 else 0.0)


@njit(nogil=True, cache=True)
def _errors(xn, margin, margin64, radius, err, err64, i):
    # error bounds of the plain kernel's values (err) and of float64 ones (err64) for a row
    # of norm at most xn
    err64[i] = margin64 * (xn + radius) * (xn + radius)
    err[i] = margin * xn + err64[i]


@njit(nogil=True, cache=True)
def _test_rows(X, start, m, C, labels, lower, p, sq, err, err64, todo):
    # the rows of X[start:start + m] whose bounds cannot exclude a change go to todo (their
    # count is returned); the others keep their label, sq their exact distance to it, and
    # their stored bounds (read only: the drifts are in the cumulative ones, see _store)
    (half_sep, cnorm, group_of, gcum, acum, cpad, margin, margin64, radius, _, _) = p
    d = X.shape[1]
    t = lower.shape[1]
    nt = 0
    for i in range(m):
        row = start + i
        a = labels[row]
        s = _sq_to(X, row, C, a, d)
        sq[i] = s
        du = np.sqrt(s) * (1.0 + 1e-9)
        _errors(du + cnorm[a], margin, margin64, radius, err, err64, i)
        # the group bounds less their groups' cumulative drifts (the assigned centre's own
        # group: less the drifts of its other centres), at least Hamerly's bound on every
        # other centre; padded (relative, and absolute at the row's scale and the drifts':
        # the subtractions round by about eps64 times the values involved)
        ga = group_of[a]
        lmin = np.float64(lower[row, ga]) - acum[a]
        for g in range(ga):
            lmin = min(lmin, np.float64(lower[row, g]) - gcum[g])
        for g in range(ga + 1, t):
            lmin = min(lmin, np.float64(lower[row, g]) - gcum[g])
        lmin = max(lmin, 2.0 * half_sep[a] - du)
        lmin = lmin * (1.0 - 1e-9) - 1e-14 * (du + cnorm[a] + radius + cpad)
        if not (lmin > du and lmin * lmin - du * du > 2.0 * err[i]):
            todo[nt] = i
            nt += 1
    return nt


@njit(nogil=True, cache=True)
def _store(lower, row, gmin, base, own, bj, gcum, acum):
    # the row's group bounds sqrt(gmin[g] + base) (from squares: clipped at 0), stored plus
    # the cumulative drift each will be read against (acum[bj] for the row's own group
    # ``own``), rounded down; one loop without branches over the groups, then the own group
    for g in range(lower.shape[1]):
        lo = np.sqrt(max(gmin[g] + base, 0.0)) * (1.0 - 1e-9)
        lower[row, g] = _down32(lo + gcum[g])
    lo = np.sqrt(max(gmin[own] + base, 0.0)) * (1.0 - 1e-9)
    lower[row, own] = _down32(lo + acum[bj])


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _values(G, r, bias, v, k):
    # the plain kernel's values of one row of a product (its statement; 2 G is exact, so a
    # fused multiply-add gives the same value)
    for j in range(k):
        v[j] = bias[j] - 2.0 * G[r, j]


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _best_groups(v, k, members, gstart, gmin):
    # the first minimum of v (the plain kernel's loop and tie rule) and, per group
    # (members[gstart[g]:gstart[g + 1]]), the smallest value at any other index (in gmin);
    # returns (index, best, second best). v[index] is set to inf.
    best = np.inf
    bj = 0
    for j in range(k):
        if v[j] < best:
            best = v[j]
            bj = j
    v[bj] = np.inf
    second = np.inf
    for g in range(gmin.shape[0]):
        low = np.inf
        for idx in range(gstart[g], gstart[g + 1]):
            low = min(low, v[members[idx]])
        gmin[g] = low
        second = min(second, low)
    return bj, best, second


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _full_tile(X, start, m, G, bias, C, labels, lower, p, v, gmin, w, has_w, sums, wsum,
               inertia):
    # every row of the tile from its product G: the plain kernel's argmin, exact distance and
    # partials (its statements, in row order), and the group bounds from the same values;
    # returns the inertia
    (_, cnorm, group_of, gcum, acum, _, margin, margin64, radius, members, gstart) = p
    d = X.shape[1]
    k = bias.shape[0]
    t = lower.shape[1]
    for i in range(m):
        row = start + i
        best = np.inf
        bj = 0
        for j in range(k):
            x = bias[j] - 2.0 * G[i, j]
            v[j] = x
            if x < best:
                best = x
                bj = j
        v[bj] = np.inf
        if t == 1:  # no gather: a contiguous minimum
            low = np.inf
            for j in range(k):
                low = min(low, v[j])
            gmin[0] = low
        else:
            for g in range(t):
                low = np.inf
                for idx in range(gstart[g], gstart[g + 1]):
                    low = min(low, v[members[idx]])
                gmin[g] = low
        wi = w[row] if has_w else 1.0
        s = 0.0
        for c in range(d):
            diff = np.float64(X[row, c]) - np.float64(C[bj, c])
            s += diff * diff
        for c in range(d):
            sums[bj, c] += wi * X[row, c]
        wsum[bj] += wi
        inertia += wi * s
        labels[row] = bj
        # the bounds as in the kernel (see _errors and bounds_kernel)
        xn = np.sqrt(s) * (1.0 + 1e-9) + cnorm[bj]
        e = margin * xn + margin64 * (xn + radius) * (xn + radius)
        base = (s - best) * (1.0 - 1e-9) - 3.0 * e
        _store(lower, row, gmin, base, group_of[bj], bj, gcum, acum)
    return inertia


@njit(nogil=True, cache=True)
def bounds_kernel(X, w, has_w, labels, lower, tries, sums, wsum, full, plain_share, p, q):
    """The pruned E-step over the rows of X: labels and bounds updated in place, partials
    accumulated; returns (inertia, distances computed by products)."""
    (shifted_t, bias, C, ref, shifted64_t, centre_sq) = q
    group_of, gcum, acum, members, gstart = p[2], p[3], p[4], p[9], p[10]
    n, d = X.shape
    k = shifted_t.shape[1]
    t = lower.shape[1]
    G = np.empty((BLOCK_ROWS, k), dtype=X.dtype)
    Xg = np.empty((BLOCK_ROWS, d), dtype=np.float64)
    Gg = np.empty((BLOCK_ROWS, k), dtype=np.float64)
    gmin = np.empty(t, dtype=np.float64)
    v = np.empty(k, dtype=np.float64)
    sq = np.empty(BLOCK_ROWS, dtype=np.float64)
    err = np.empty(BLOCK_ROWS, dtype=np.float64)
    err64 = np.empty(BLOCK_ROWS, dtype=np.float64)
    todo = np.empty(BLOCK_ROWS, dtype=np.int64)
    inertia = 0.0
    computed = 0
    for start in range(0, n, BLOCK_ROWS):
        m = min(BLOCK_ROWS, n - start)
        if full:
            # the plain kernel's product and one fused pass over the tile's rows
            np.dot(X[start:start + m], shifted_t, G[:m])
            computed += m * k
            inertia = _full_tile(X, start, m, G, bias, C, labels, lower, p, v, gmin, w, has_w,
                                 sums, wsum, inertia)
            continue
        nt = _test_rows(X, start, m, C, labels, lower, p, sq, err, err64, todo)
        if nt > 0:
            # a partial float64 product of the unsettled rows pays unless most rows need
            # one, or near-ties keep sending this chunk's blocks back to the plain product
            plain = nt > plain_share * m or 2.0 * tries[1] > tries[0] + 2.0
            if plain:
                np.dot(X[start:start + m], shifted_t, G[:m])
                computed += m * k
            else:
                tries[0] += 1.0
                for r in range(nt):
                    for c in range(d):
                        Xg[r, c] = np.float64(X[start + todo[r], c]) - ref[c]
                np.dot(Xg[:nt], shifted64_t, Gg[:nt])
                computed += nt * k
            for r in range(nt):
                i = todo[r]
                row = start + i
                if plain:
                    _values(G, i, bias, v, k)
                else:
                    _values(Gg, r, centre_sq, v, k)
                bj, best, second = _best_groups(v, k, members, gstart, gmin)
                if not plain and not (second - best > 2.0 * err[i] + 2.0 * err64[i]):
                    # too close to call from another product: the plain kernel's values decide
                    plain = True
                    tries[1] += 1.0
                    np.dot(X[start:start + m], shifted_t, G[:m])
                    computed += m * k
                    _values(G, i, bias, v, k)
                    bj, best, second = _best_groups(v, k, members, gstart, gmin)
                if bj != labels[row]:
                    sq[i] = _sq_to(X, row, C, bj, d)
                labels[row] = bj
                # ||x - c_j||^2 >= v_j - E + ||x - mu||^2 >= v_j - best + ||x - c_bj||^2 - 2 E
                base = (sq[i] - best) * (1.0 - 1e-9) - 3.0 * err[i]
                _store(lower, row, gmin, base, group_of[bj], bj, gcum, acum)
        # partials in row order, with the plain kernel's statements
        inertia = _accumulate(X, start, m, labels, sq, w, has_w, sums, wsum, inertia)
    return inertia, computed


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _accumulate(X, start, m, labels, sq, w, has_w, sums, wsum, inertia):
    d = X.shape[1]
    for i in range(m):
        row = start + i
        bj = labels[row]
        wi = w[row] if has_w else 1.0
        for c in range(d):
            sums[bj, c] += wi * X[row, c]
        wsum[bj] += wi
        inertia += wi * sq[i]
    return inertia
