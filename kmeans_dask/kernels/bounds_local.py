"""Yinyang's local filter for the bounds-pruned E-step (see :mod:`kmeans_dask.kernels.bounds`):
a row whose bounds fail gets the float64 values of its assigned centre and of the centres of
the groups whose own bound fails only. Inputs already validated; numba only."""

from __future__ import annotations

import numpy as np
from numba import njit

from .bounds_rows import FLAGS, down32, sq_to


@njit(nogil=True, cache=True, fastmath=FLAGS)
def _value64(Xg, r, S, centre_sq, j, d):
    # ||x - c_j||^2 - ||x - mu||^2 from the centred float64 row (any order: err64 bounds it)
    s = 0.0
    for c in range(d):
        s += Xg[r, c] * S[j, c]
    return centre_sq[j] - 2.0 * s


@njit(nogil=True, cache=True)
def group_values(Xg, nt, todo, fail, SG, sorted_sq, gstart, B, rows, out, V):
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
def local_rows(X, start, nt, todo, Xg, S, centre_sq, C, labels, lower, fail, own, sq, err,
               err64, V, pos, gmin, group_of, gcum, acum, members, gstart):
    # Yinyang's local filter for the rows whose bounds fail (todo[:nt]), from the float64
    # values of the failing groups' centres (V[r], by member position; group_values) and
    # of the assigned centre (every other centre is farther than the assigned one by more
    # than 2 E: the plain kernel cannot pick it). When a row's best beats all its other
    # values by more than the error bounds, its label, sq and bounds are updated: the
    # failing groups' bounds from their values, the others kept, the old label's group (if
    # not failing) now also bounding the old label (own[i]: its bound as the test read
    # it, on the old label's other centres). Returns the first row (r) too close to
    # call (the plain product decides it and the rest), nt if none. One call per tile: a
    # call per row with this many arrays costs more than the row's work.
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
        if bj != a:
            sq[i] = sq_to(X, row, C, bj, d)
            labels[row] = bj
        base = (sq[i] - best) * (1.0 - 1e-9) - 3.0 * err[i]
        gb = group_of[bj]
        for g in range(t):
            if fail[i, g]:
                lo = np.sqrt(max(gmin[g] + base, 0.0)) * (1.0 - 1e-9)
                lower[row, g] = down32(lo + (acum[bj] if g == gb else gcum[g]))
        if bj != a and not fail[i, ga]:
            # the old label's group bounded its other centres; now it must bound a too
            lo = min(own[i], np.sqrt(max(va + base, 0.0)) * (1.0 - 1e-9))
            lower[row, ga] = down32(lo + gcum[ga])
    return nt
