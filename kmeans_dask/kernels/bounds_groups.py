"""Groups of centres for the bounds-pruned E-step (:mod:`kmeans_dask.kernels.bounds`): how
many, and which centres share a group (balanced, near centres together)."""

from __future__ import annotations

import numpy as np
from numba import njit

#: most groups of centres (memory: 4 bytes a row each)
MAX_GROUPS = 32


def n_groups(k: int) -> int:
    """Groups of centres for ``k`` clusters: about ``k / 10`` (Yinyang's choice), 1 to 32."""
    return max(1, min(MAX_GROUPS, k // 10))


def centre_groups(C: np.ndarray, t: int) -> np.ndarray:
    """Group of every centre: a deterministic k-means of the centres into ``t`` groups of at
    most ``ceil(k / t)`` centres each (farthest-first start from the centre nearest their
    mean, then 10 steps that fill the groups nearest pair first, up to that size).

    Balanced on purpose: a group's bounds lose the largest move of any of its centres, and
    the rows whose bounds fail compute the distances to the failing groups' centres only, so
    one group holding most centres (what an unconstrained k-means of evenly spread centres
    gives: the farthest-first seeds are outliers) makes both filters useless."""
    c = np.asarray(C, dtype=np.float64)
    k = c.shape[0]
    t = min(t, k)
    if t <= 1:
        return np.zeros(k, dtype=np.int64)
    first = int(np.argmin(((c - c.mean(axis=0)) ** 2).sum(axis=1)))
    picks = [first]
    dist = ((c - c[first]) ** 2).sum(axis=1)
    for _ in range(1, t):
        j = int(np.argmax(dist))
        picks.append(j)
        dist = np.minimum(dist, ((c - c[j]) ** 2).sum(axis=1))
    seeds = c[picks]
    cap = -(-k // t)
    labels = np.zeros(k, dtype=np.int64)
    for _ in range(10):
        labels = _fill_nearest(pairwise_sq(c, seeds), cap)
        for g in range(t):
            members = labels == g
            if members.any():
                seeds[g] = c[members].mean(axis=0)
    # number the groups 0..t'-1 (an empty group is dropped)
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _fill_nearest(dist: np.ndarray, cap: int) -> np.ndarray:
    # every centre to a group, the (centre, group) pairs taken nearest first (stable: ties
    # by index), a group taking at most ``cap`` centres
    k, t = dist.shape
    labels = np.full(k, -1, dtype=np.int64)
    size = np.zeros(t, dtype=np.int64)
    left = k
    for flat in np.argsort(dist, axis=None, kind="stable").tolist():
        i, g = divmod(flat, t)
        if labels[i] < 0 and size[g] < cap:
            labels[i] = g
            size[g] += 1
            left -= 1
            if left == 0:
                break
    return labels


def pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances between the rows of ``a`` and of ``b`` (float64), from the direct
    differences (not the expanded form: exact to rounding). Compiled: ``O(k^2 d)`` on the
    driver every iteration (numpy's broadcast took 5 ms at k = 256, d = 32)."""
    b64 = np.asarray(b, dtype=np.float64)
    return _pairwise_sq(np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b64.T))


@njit(nogil=True, cache=True)
def _pairwise_sq(a, bt):
    # ``bt``: b transposed, so that the inner loop runs over b's rows with unit stride and
    # vectorises; every entry still adds its d terms from 0 in feature order (the same bits
    # as a loop over the features innermost)
    out = np.zeros((a.shape[0], bt.shape[1]))
    for i in range(a.shape[0]):
        row = out[i]
        for c in range(a.shape[1]):
            ai = a[i, c]
            for j in range(bt.shape[1]):
                diff = ai - bt[c, j]
                row[j] += diff * diff
    return out
