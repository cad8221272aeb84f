"""The row tests of the bounds-pruned E-step (see :mod:`kmeans_dask.kernels.bounds` for the
algorithm and the exactness argument): which rows of a tile its bounds cannot settle. Inputs
already validated; numba only."""

from __future__ import annotations

import numpy as np
from numba import njit

from .bounds_rows import errors, sq_to, up32
from .prefetch import prefetch_row


@njit(nogil=True, cache=True)
def failing_rows(X, start, m, C, labels, lower, upper, p, sq, err, err64, todo, fail, own, lm,
               keep, most):
    # the rows of X[start:start + m] whose bounds cannot exclude a change go to todo (their
    # count is returned, with the distances Yinyang's local filter would compute for them:
    # the assigned centre's and those of the groups whose bounds fail, flagged in fail;
    # own: the bound read on the assigned centre's group, for when the label moves);
    # the others keep their label and their stored bounds. A row is first tested with its
    # upper bound (the row itself is not read); only the rows that fail it have their exact
    # distance computed (into sq, and as their new upper bound) and are tested again.
    # More than ``most`` rows failing the first test: (their count, -1) at once (the tile is
    # cheaper recomputed whole).
    (half_sep, cnorm, group_of, gcum, acum, cpad, margin, margin64, radius, _, gstart,
     ocum) = p
    d = X.shape[1]
    t = lower.shape[1]
    nc = _candidates(X, start, m, labels, lower, upper, p, err, err64, todo, lm, keep)
    if nc > most:
        return nc, -1
    # the candidates' exact distances in a loop of their own: their rows are scattered, and
    # independent reads overlap (each row's read would otherwise wait for the last test)
    for r in range(nc):
        i = todo[r]
        row = start + i
        sq[i] = sq_to(X, row, C, labels[row], d)
    nt = 0
    need = 0
    for r in range(nc):
        i = todo[r]
        row = start + i
        a = labels[row]
        ga = group_of[a]
        du = np.sqrt(sq[i]) * (1.0 + 1e-9)
        upper[row] = up32(du - ocum[a])
        errors(du + cnorm[a], margin, margin64, radius, err, err64, i)
        ham = 2.0 * half_sep[a] - du
        pad = 1e-14 * (du + cnorm[a] + radius + cpad)
        lmin = max(lm[r], ham) * (1.0 - 1e-9) - pad
        if lmin > du and lmin * lmin - du * du > 2.0 * err[i]:
            continue
        todo[nt] = i  # nt <= r: todo[r] is read above, before any write reaches it
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
            if g == ga:
                own[i] = lg
        need -= 1 if fail[i, ga] else 0
    return nt, need


@njit(nogil=True, cache=True)
def _screen(start, m, labels, lower, upper, p, lm, keep):
    # a first test of the tile's rows, in loops the compiler vectorises across rows: every
    # group bound less its group's whole drift (for the assigned centre's own group that is
    # less than its bound, which excludes the centre's own move: a weaker, valid bound), and
    # the upper bound; keep[i]: the row is settled by it
    (half_sep, cnorm, _, gcum, _, cpad, margin, margin64, radius, _, _, ocum) = p
    t = lower.shape[1]
    for i in range(m):
        lm[i] = np.float64(lower[start + i, 0]) - gcum[0]
    for g in range(1, t):
        gc = gcum[g]
        for i in range(m):
            lm[i] = min(lm[i], np.float64(lower[start + i, g]) - gc)
    for i in range(m):
        a = labels[start + i]
        u = (np.float64(upper[start + i]) + ocum[a]) * (1.0 + 1e-9)
        pad = 1e-14 * (abs(u) + cnorm[a] + radius + cpad)
        u += pad
        xn = u + cnorm[a]
        e = margin * xn + margin64 * (xn + radius) * (xn + radius)
        lu = max(lm[i], 2.0 * half_sep[a] - u) * (1.0 - 1e-9) - pad
        keep[i] = (lu > u) & (lu * lu - u * u > 2.0 * e)


@njit(nogil=True, cache=True)
def _candidates(X, start, m, labels, lower, upper, p, err, err64, cand, lm, keep):
    # the rows of the tile whose upper bound does not settle them, into cand (their count is
    # returned), with the least of their group bounds (lm); their rows are asked for ahead
    (half_sep, cnorm, group_of, gcum, acum, cpad, margin, margin64, radius, _, _, ocum) = p
    t = lower.shape[1]
    _screen(start, m, labels, lower, upper, p, lm, keep)
    nc = 0
    for i in range(m):
        if keep[i]:
            continue
        row = start + i
        a = labels[row]
        # the group bounds less their groups' cumulative drifts (the assigned centre's own
        # group: less the drifts of its other centres); the bounds are padded (relative, and
        # absolute at the row's scale and the drifts': the subtractions round by about
        # eps64 times the values involved)
        ga = group_of[a]
        lmin = np.float64(lower[row, ga]) - acum[a]
        for g in range(ga):
            lmin = min(lmin, np.float64(lower[row, g]) - gcum[g])
        for g in range(ga + 1, t):
            lmin = min(lmin, np.float64(lower[row, g]) - gcum[g])
        # the stored upper bound plus the assigned centre's drifts since
        u = (np.float64(upper[row]) + ocum[a]) * (1.0 + 1e-9)
        pad = 1e-14 * (abs(u) + cnorm[a] + radius + cpad)
        u += pad
        errors(u + cnorm[a], margin, margin64, radius, err, err64, i)
        # at least Hamerly's bound on every other centre
        lu = max(lmin, 2.0 * half_sep[a] - u) * (1.0 - 1e-9) - pad
        if not (lu > u and lu * lu - u * u > 2.0 * err[i]):
            cand[nc] = i
            lm[nc] = lmin
            nc += 1
            prefetch_row(X, row)
    return nc
