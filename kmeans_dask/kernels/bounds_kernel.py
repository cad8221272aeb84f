"""The compiled pass of the bounds-pruned E-step (see :mod:`kmeans_dask.kernels.bounds` for the
algorithm and the exactness argument). Inputs already validated; numba only."""

from __future__ import annotations

import numpy as np
from numba import njit

from .bounds_full import full_screened
from .bounds_local import group_values, local_rows
from .bounds_rows import FLAGS, down32, sq_to, up32
from .bounds_screen import failing_rows
from .lloyd import BLOCK_ROWS
from .screen import MAX_FAIL_SHARE, screen_buffers, screen_tile
from .segments import add_segment, clear, resum


@njit(nogil=True, cache=True)
def _store(lower, row, gmin, base, own, bj, gcum, acum):
    # the row's group bounds sqrt(gmin[g] + base) (from squares: clipped at 0), stored plus
    # the cumulative drift each will be read against (acum[bj] for the row's own group
    # ``own``), rounded down; one loop without branches over the groups, then the own group
    for g in range(lower.shape[1]):
        lo = np.sqrt(max(gmin[g] + base, 0.0)) * (1.0 - 1e-9)
        lower[row, g] = down32(lo + gcum[g])
    lo = np.sqrt(max(gmin[own] + base, 0.0)) * (1.0 - 1e-9)
    lower[row, own] = down32(lo + acum[bj])


@njit(nogil=True, cache=True, fastmath=FLAGS)
def _values(G, r, bias, v, k):
    # the plain kernel's values of one row of a product (its statement; 2 G is exact, so a
    # fused multiply-add gives the same value)
    for j in range(k):
        v[j] = bias[j] - 2.0 * G[r, j]


@njit(nogil=True, cache=True, fastmath=FLAGS)
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


@njit(nogil=True, cache=True, fastmath=FLAGS)
def _full_tile(X, start, m, G, bias, C, labels, lower, upper, p, v, gmin, w, has_w, ss, sw,
               pick, stamp, inertia):
    # every row of the tile from its product G: the plain kernel's argmin and exact distance
    # (its statements, in row order) and the bounds from the same values; stamp < 0 (a full
    # pass): the rows' partials added to the segment's sums ss, sw (the plain kernel's
    # statements, in row order); else the centres a row left or joined are marked in pick
    # (their segment's sums are added again: resum). Returns the inertia.
    (_, cnorm, group_of, gcum, acum, _, margin, margin64, radius, members, gstart, ocum) = p
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
        # the bounds as in the kernel (see errors and bounds_kernel)
        du = np.sqrt(s) * (1.0 + 1e-9)
        upper[row] = up32(du - ocum[bj])
        xn = du + cnorm[bj]
        e = margin * xn + margin64 * (xn + radius) * (xn + radius)
        base = (s - best) * (1.0 - 1e-9) - 3.0 * e
        _store(lower, row, gmin, base, group_of[bj], bj, gcum, acum)
    return inertia


@njit(nogil=True, cache=True)
def _track(start, nt, todo, old, labels, sq, upper, ocum, pick, stamp):
    # after the unsettled rows' labels are final (sq: their exact distances to them): their
    # upper bounds, and the centres a row left or joined marked in pick
    for r in range(nt):
        i = todo[r]
        row = start + i
        bj = labels[row]
        upper[row] = up32(np.sqrt(sq[i]) * (1.0 + 1e-9) - ocum[bj])
        if bj != old[r]:
            pick[bj] = stamp
            pick[old[r]] = stamp


@njit(nogil=True, cache=True)
def _marked(pick, stamp):
    for j in range(pick.shape[0]):
        if pick[j] == stamp:
            return True
    return False


@njit(nogil=True, cache=True)
def _unmark(pick, stamp):
    for j in range(pick.shape[0]):
        if pick[j] == stamp:
            pick[j] = -1


@njit(nogil=True, cache=True)
def bounds_kernel(X, w, has_w, st, sums, wsum, full, seg, shares, p, q):
    """The pruned E-step over the rows of X, segment by segment (``seg`` rows,
    :mod:`.segments`): labels, bounds and segment sums (``st``) updated in place, partials
    accumulated; returns (inertia: exact in a full pass, else 0; distances computed)."""
    labels, lower, _, seg_sums, seg_w, _ = st
    n, d = X.shape
    k = q[0].shape[1]
    t = lower.shape[1]
    # the local filter's buffers (none with one group: it is not used)
    nl = BLOCK_ROWS if t > 1 else 0
    bufs = (
        np.empty((BLOCK_ROWS, d), dtype=np.float64),  # the unsettled rows, centred (float64)
        np.empty((BLOCK_ROWS, k), dtype=np.float64),  # their values
        np.empty((nl, d), dtype=np.float64),  # a group's rows
        np.empty(nl, dtype=np.int64),  # their indices
        np.empty(nl * k, dtype=np.float64),  # their product
    )
    rows = (
        np.empty(BLOCK_ROWS, dtype=np.float64),  # sq: exact distances to the label
        np.empty(BLOCK_ROWS, dtype=np.float64),  # err
        np.empty(BLOCK_ROWS, dtype=np.float64),  # err64
        np.empty(BLOCK_ROWS, dtype=np.int64),  # todo
        np.empty((BLOCK_ROWS, t), dtype=np.bool_),  # fail
        np.empty(BLOCK_ROWS, dtype=np.float64),  # own
        np.empty(BLOCK_ROWS, dtype=np.int32),  # old: the unsettled rows' labels before
        np.empty(k, dtype=np.float64),  # v: one row's values
        np.empty(t, dtype=np.float64),  # gmin: one row's per-group minima
        np.empty(BLOCK_ROWS, dtype=np.float64),  # lm: the candidates' least group bounds
        np.empty(BLOCK_ROWS, dtype=np.bool_),  # keep: settled by the screen
    )
    G = np.empty((BLOCK_ROWS, k), dtype=X.dtype)
    # the float32 screen of the tiles recomputed whole (:mod:`.bounds_full`): its buffers,
    # the group minima, and whether it is still on (off once its rows keep failing: ties)
    sc = q[10]
    sb = screen_buffers(sc[0], k, d)
    scr = (sb, np.empty((t, BLOCK_ROWS if sc[0] else 0), dtype=np.float32),
           np.array([sc[0]]))
    # pick[j] == s: centre j lost or gained a row in segment s (its sums there are redone)
    pick = np.full(k, -1, dtype=np.int64)
    inertia = 0.0
    computed = 0
    for si in range(seg_sums.shape[0]):
        s0 = si * seg
        s1 = min(n, s0 + seg)
        ss, sw = seg_sums[si], seg_w[si]
        if full:
            clear(ss, sw)
        whole = full
        for start in range(s0, s1, BLOCK_ROWS):
            m = min(BLOCK_ROWS, s1 - start)
            c, inertia = _tile(X, w, has_w, st, start, m, whole, shares, p, q, G, bufs, rows,
                               ss, sw, pick, -1 if whole else si, inertia, scr)
            computed += c
            if not whole and start == s0 and c == m * k and s1 > start + m:
                # the segment's first tile was recomputed whole (most of its rows failed:
                # the centres moved again), so are its other tiles, without testing their
                # rows first, and its sums are added from zero as in a full pass (not
                # summed again for every centre a row left or joined): the first tile's
                # rows now, the others' as they come, in row order
                whole = True
                resum(X, s0, start + m, labels, w, has_w, ss, sw, pick, -1)
                _unmark(pick, si)
        if not whole and _marked(pick, si):
            resum(X, s0, s1, labels, w, has_w, ss, sw, pick, si)
        add_segment(sums, wsum, ss, sw)
    return (inertia if full else 0.0), computed


@njit(nogil=True, cache=True)
def _tile(X, w, has_w, st, start, m, full, shares, p, q, G, bufs, rows, ss, sw, pick, stamp,
          inertia, scr):
    # one tile of bounds_kernel; returns (distances computed, inertia)
    labels, lower, upper, _, _, tries = st
    sq, err, err64, todo, fail, own, old, v, gmin, lm, keep = rows
    shifted_t, bias, C = q[0], q[1], q[2]
    k = shifted_t.shape[1]
    t = lower.shape[1]
    nt = 0
    plain = local = False
    need = 0
    if not full:
        # with the screen on, a tile most of whose rows fail is recomputed whole from it
        # (:mod:`.bounds_full`), decided from the first, cheap test of its rows
        most = int(shares[2] * m) if scr[2][0] else m
        nt, need = failing_rows(X, start, m, C, labels, lower, upper, p, sq, err, err64, todo,
                              fail, own, lm, keep, most)
        # the cheapest way to the unsettled rows' values: few distances (the failing
        # groups' centres) in float64 (Yinyang's local filter); else a float64 product
        # of those rows with every centre, unless most rows need one; the plain product
        # also once near-ties keep sending this chunk's blocks back to it
        plain = 2.0 * tries[1] > tries[0] + 2.0 or (
            need > shares[1] * m * k and nt > shares[0] * m
        )
        # (one group: the local filter would compute every distance, row by row)
        local = not plain and t > 1 and need <= shares[1] * m * k
    if full or need < 0 or (plain and nt > shares[0] * m):
        # every row (most rows need it: cheaper than row by row): from the float32 screen
        # when it settles them all, else the plain kernel's product, in one fused pass
        sb, gm, on = scr
        if on[0] and screen_tile(X, start, m, q[10], sb) == 0:
            inertia = full_screened(X, start, m, q[10], sb, gm, C, labels, lower, upper, p, w,
                                    has_w, ss, sw, pick, stamp, inertia)
        else:
            np.dot(X[start:start + m], shifted_t, G[:m])
            inertia = _full_tile(X, start, m, G, bias, C, labels, lower, upper, p, v, gmin, w,
                                 has_w, ss, sw, pick, stamp, inertia)
        # rows that keep failing the screen (ties) cost more than it saves: it stops
        if on[0] and sb[7][1] > MAX_FAIL_SHARE * sb[7][0] + 64:
            on[0] = False
        return m * k, inertia
    if nt == 0:
        return 0, inertia
    for r in range(nt):
        old[r] = labels[start + todo[r]]
    c = _unsettled(X, start, m, nt, plain, local, G, labels, lower, tries, p, q, bufs, gmin, v,
                   sq, err, err64, todo, fail, own)
    _track(start, nt, todo, old, labels, sq, upper, p[11], pick, stamp)
    return c, inertia


@njit(nogil=True, cache=True)
def _unsettled(X, start, m, nt, plain, local, G, labels, lower, tries, p, q, bufs, gmin, v, sq,
               err, err64, todo, fail, own):
    # the labels, sq and bounds of the tile's unsettled rows (todo[:nt]) from the plain
    # product, a float64 product of those rows, or the local filter; returns the distances
    # computed
    (shifted_t, bias, C, ref, shifted64_t, centre_sq, shifted64, SG, sorted_sq, pos, _) = q
    Xg, Gg, B, rows, out = bufs
    # the per-row arrays one by one (see local_rows)
    group_of, gcum, acum, members, gstart = p[2], p[3], p[4], p[9], p[10]
    d = X.shape[1]
    k = shifted_t.shape[1]
    computed = 0
    if plain:
        np.dot(X[start:start + m], shifted_t, G[:m])
        computed += m * k
    else:
        tries[0] += 1.0
        for r in range(nt):
            for c in range(d):
                Xg[r, c] = np.float64(X[start + todo[r], c]) - ref[c]
        if local:
            computed += group_values(Xg, nt, todo, fail, SG, sorted_sq, gstart, B, rows, out,
                                      Gg)
        else:
            np.dot(Xg[:nt], shifted64_t, Gg[:nt])
            computed += nt * k
    r0 = 0
    if local:
        r0 = local_rows(X, start, nt, todo, Xg, shifted64, centre_sq, C, labels, lower, fail,
                        own, sq, err, err64, Gg, pos, gmin, group_of, gcum, acum, members,
                        gstart)
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
            sq[i] = sq_to(X, row, C, bj, d)
        labels[row] = bj
        # ||x - c_j||^2 >= v_j - E + ||x - mu||^2 >= v_j - best + ||x - c_bj||^2 - 2 E
        base = (sq[i] - best) * (1.0 - 1e-9) - 3.0 * err[i]
        _store(lower, row, gmin, base, group_of[bj], bj, gcum, acum)
    return computed
