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
def _test_rows(X, start, m, C, labels, lower, p, sq, err, err64, todo, fail):
    # the rows of X[start:start + m] whose bounds cannot exclude a change go to todo (their
    # count is returned, with the distances Yinyang's local filter would compute for them:
    # the assigned centre's and those of the groups whose bounds fail, flagged in fail);
    # the others keep their label, sq their exact distance to it, and their stored bounds
    # (read only: the drifts are in the cumulative ones, see _store)
    (half_sep, cnorm, group_of, gcum, acum, cpad, margin, margin64, radius, _, gstart) = p
    d = X.shape[1]
    t = lower.shape[1]
    nt = 0
    need = 0
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
        ham = 2.0 * half_sep[a] - du
        pad = 1e-14 * (du + cnorm[a] + radius + cpad)
        lmin = max(lmin, ham) * (1.0 - 1e-9) - pad
        if not (lmin > du and lmin * lmin - du * du > 2.0 * err[i]):
            todo[nt] = i
            nt += 1
            need += 1
            e2 = 2.0 * err[i]
            for g in range(t):
                lg = np.float64(lower[row, g]) - gcum[g]
                if g == ga:
                    lg = np.float64(lower[row, g]) - acum[a]
                lg = max(lg, ham) * (1.0 - 1e-9) - pad
                bad = not (lg > du and lg * lg - du * du > e2)
                fail[i, g] = bad
                need += (gstart[g + 1] - gstart[g]) if bad else 0
            need -= 1 if fail[i, ga] else 0
    return nt, need


@njit(nogil=True, cache=True, inline="always")
def _read(lower, row, g, ga, a, gcum, acum, ham, pad):
    # the row's bound on group g as the test reads it (see _test_rows)
    lg = np.float64(lower[row, g]) - (acum[a] if g == ga else gcum[g])
    return max(lg, ham) * (1.0 - 1e-9) - pad


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
def _value64(Xg, r, S, centre_sq, j, d):
    # ||x - c_j||^2 - ||x - mu||^2 from the centred float64 row (any order: err64 bounds it)
    s = 0.0
    for c in range(d):
        s += Xg[r, c] * S[j, c]
    return centre_sq[j] - 2.0 * s


@njit(nogil=True, cache=True)
def _group_values(Xg, nt, todo, fail, SG, sorted_sq, gstart, B, rows, out, V):
    # Yinyang's local filter, values: per group, the float64 values of the unsettled rows
    # whose bounds on it fail with its centres (SG: per group a (d, size) block of the
    # centred centres, in member order) into V[r, member position], from one product (for
    # a few rows too: BLAS's small-matrix kernel beats loops here); returns their count
    d = Xg.shape[1]
    t = fail.shape[1]
    computed = 0
    for g in range(t):
        gs = gstart[g]
        size = gstart[g + 1] - gs
        block = SG[gs * d:(gs + size) * d].reshape((d, size))
        ng = 0
        for r in range(nt):
            if fail[todo[r], g]:
                rows[ng] = r
                ng += 1
        if ng == 0:
            continue
        computed += ng * size
        for q in range(ng):
            for c in range(d):
                B[q, c] = Xg[rows[q], c]
        prod = out[:ng * size].reshape((ng, size))
        np.dot(B[:ng], block, prod)
        for q in range(ng):
            r = rows[q]
            for jj in range(size):
                V[r, gs + jj] = sorted_sq[gs + jj] - 2.0 * prod[q, jj]
    return computed


@njit(nogil=True, cache=True)
def _local_rows(X, start, nt, todo, Xg, S, centre_sq, C, labels, lower, fail, sq, err, err64, V,
                pos, gmin, half_sep, cnorm, group_of, gcum, acum, members, gstart, pads):
    # Yinyang's local filter for the rows whose bounds fail (todo[:nt]), from the float64
    # values of the failing groups' centres (V[r], by member position; _group_values) and
    # of the assigned centre (every other centre is farther than the assigned one by more
    # than 2 E: the plain kernel cannot pick it). When a row's best beats all its other
    # values by more than the error bounds, its label, sq and bounds are updated: the
    # failing groups' bounds from their values, the others kept, the old label's group (if
    # not failing) now also bounding the old label. Returns the first row (r) too close to
    # call (the plain product decides it and the rest), nt if none. One call per tile: a
    # call per row with this many arrays costs more than the row's work.
    cpad, radius = pads
    d = X.shape[1]
    t = lower.shape[1]
    for r in range(nt):
        i = todo[r]
        row = start + i
        a = labels[row]
        ga = group_of[a]
        va = V[r, pos[a]] if fail[i, ga] else _value64(Xg, r, S, centre_sq, a, d)
        best = va
        bj = a
        for g in range(t):
            if fail[i, g]:
                for idx in range(gstart[g], gstart[g + 1]):
                    x = V[r, idx]
                    j = members[idx]
                    # the plain kernel's tie rule: the first index of the minimum
                    if x < best or (x == best and j < bj):
                        best = x
                        bj = j
        second = va if bj != a and not fail[i, ga] else np.inf
        for g in range(t):
            if fail[i, g]:
                low = np.inf
                for idx in range(gstart[g], gstart[g + 1]):
                    if members[idx] != bj:
                        low = min(low, V[r, idx])
                gmin[g] = low
                second = min(second, low)
        if not (second - best > 2.0 * err[i] + 2.0 * err64[i]):
            return r
        old = np.inf
        if bj != a:
            s = _sq_to(X, row, C, bj, d)
            du = np.sqrt(sq[i]) * (1.0 + 1e-9)
            if not fail[i, ga]:
                # the old label's group bounded its other centres; now it must bound a too
                old = _read(lower, row, ga, ga, a, gcum, acum, 2.0 * half_sep[a] - du,
                            1e-14 * (du + cnorm[a] + radius + cpad))
            sq[i] = s
            labels[row] = bj
        base = (sq[i] - best) * (1.0 - 1e-9) - 3.0 * err[i]
        gb = group_of[bj]
        for g in range(t):
            if fail[i, g]:
                lo = np.sqrt(max(gmin[g] + base, 0.0)) * (1.0 - 1e-9)
                lower[row, g] = _down32(lo + (acum[bj] if g == gb else gcum[g]))
        if bj != a and not fail[i, ga]:
            lo = min(old, np.sqrt(max(va + base, 0.0)) * (1.0 - 1e-9))
            lower[row, ga] = _down32(lo + gcum[ga])
    return nt


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
def bounds_kernel(X, w, has_w, labels, lower, tries, sums, wsum, full, shares, p, q):
    """The pruned E-step over the rows of X: labels and bounds updated in place, partials
    accumulated; returns (inertia, distances computed)."""
    (shifted_t, bias, C, ref, shifted64_t, centre_sq, shifted64, SG, sorted_sq, pos) = q
    plain_share, local_share = shares
    # the per-row arrays one by one (see _local_rows)
    half_sep, cnorm, group_of, gcum, acum = p[0], p[1], p[2], p[3], p[4]
    members, gstart, pads = p[9], p[10], (p[5], p[8])
    n, d = X.shape
    k = shifted_t.shape[1]
    t = lower.shape[1]
    G = np.empty((BLOCK_ROWS, k), dtype=X.dtype)
    Xg = np.empty((BLOCK_ROWS, d), dtype=np.float64)
    Gg = np.empty((BLOCK_ROWS, k), dtype=np.float64)
    gmin = np.empty(t, dtype=np.float64)
    v = np.empty(k, dtype=np.float64)
    # the local filter's buffers (none with one group: it is not used)
    nl = BLOCK_ROWS if t > 1 else 0
    B = np.empty((nl, d), dtype=np.float64)
    rows = np.empty(nl, dtype=np.int64)
    out = np.empty(nl * k, dtype=np.float64)
    sq = np.empty(BLOCK_ROWS, dtype=np.float64)
    err = np.empty(BLOCK_ROWS, dtype=np.float64)
    err64 = np.empty(BLOCK_ROWS, dtype=np.float64)
    todo = np.empty(BLOCK_ROWS, dtype=np.int64)
    fail = np.empty((BLOCK_ROWS, t), dtype=np.bool_)
    inertia = 0.0
    computed = 0
    for start in range(0, n, BLOCK_ROWS):
        m = min(BLOCK_ROWS, n - start)
        nt = 0
        plain = local = False
        if not full:
            nt, need = _test_rows(X, start, m, C, labels, lower, p, sq, err, err64, todo, fail)
            # the cheapest way to the unsettled rows' values: few distances (the failing
            # groups' centres) in float64 (Yinyang's local filter); else a float64 product
            # of those rows with every centre, unless most rows need one; the plain product
            # also once near-ties keep sending this chunk's blocks back to it
            plain = 2.0 * tries[1] > tries[0] + 2.0 or (
                need > local_share * m * k and nt > plain_share * m
            )
            # (one group: the local filter would compute every distance, row by row)
            local = not plain and t > 1 and need <= local_share * m * k
        if full or (plain and nt > plain_share * m):
            # the plain kernel's product and one fused pass over the tile's rows (most rows
            # need it: cheaper than row by row)
            np.dot(X[start:start + m], shifted_t, G[:m])
            computed += m * k
            inertia = _full_tile(X, start, m, G, bias, C, labels, lower, p, v, gmin, w, has_w,
                                 sums, wsum, inertia)
            continue
        if nt > 0:
            if plain:
                np.dot(X[start:start + m], shifted_t, G[:m])
                computed += m * k
            else:
                tries[0] += 1.0
                for r in range(nt):
                    for c in range(d):
                        Xg[r, c] = np.float64(X[start + todo[r], c]) - ref[c]
                if local:
                    computed += _group_values(Xg, nt, todo, fail, SG, sorted_sq, gstart, B, rows,
                                              out, Gg)
                else:
                    np.dot(Xg[:nt], shifted64_t, Gg[:nt])
                    computed += nt * k
            r0 = 0
            if local:
                r0 = _local_rows(X, start, nt, todo, Xg, shifted64, centre_sq, C, labels, lower,
                                 fail, sq, err, err64, Gg, pos, gmin, half_sep, cnorm, group_of,
                                 gcum, acum, members, gstart, pads)
                if r0 < nt:
                    # too close to call from another product: the plain kernel's values decide
                    plain = True
                    tries[1] += 1.0
                    np.dot(X[start:start + m], shifted_t, G[:m])
                    computed += m * k
            for r in range(r0, nt):
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
