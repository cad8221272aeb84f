"""Landmark clusters of one reference block, for the pruned exact KNN search (numpy + numba).

:func:`build_index` runs a small seeded k-means (a sample of the block, a few Lloyd
iterations, then every row to its nearest centre) with about :data:`CLUSTER_ROWS` rows per
cluster, and returns a :class:`ClusterIndex`: the block's rows grouped by cluster (a
permutation, ``order``; within a cluster, nearest its centroid first), each cluster's
centroid (the mean of its rows) and radius (the largest distance of its rows to that
centroid, computed exactly in float64 and padded for rounding), and the grouped rows
prepared for the float32 selection of :mod:`kmeans_dask.kernels.knn` (``-2 (r - mu)`` and
``||r - mu||^2``, as that kernel builds them tile by tile). The clustering only decides
how much the search can skip, never its result: the bounds use the actual radii of the
actual member rows.

Inputs are assumed validated (finite, 2-D, C-contiguous float32/float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["CLUSTER_ROWS", "MIN_CLUSTERS", "ClusterIndex", "build_index", "nearest_cluster"]

#: Target rows per landmark cluster (the pruning granularity on the reference side).
CLUSTER_ROWS = 2048
#: A block that would get fewer clusters gets no index: pruning cannot pay.
MIN_CLUSTERS = 4
_ITERATIONS = 6  # Lloyd iterations on the sample: the landmarks need not be converged
_SAMPLE_PER_CLUSTER = 32
_ASSIGN_ROWS = 4096
_U64 = float(np.finfo(np.float64).eps) / 2


@dataclass(frozen=True)
class ClusterIndex:
    """One reference block grouped by landmark cluster.

    Attributes
    ----------
    order : ndarray of shape (n,), int64
        Row of the block at each grouped position (clusters in path order; within one,
        rows by increasing distance to its centroid, ties by row).
    starts : ndarray of shape (n_clusters + 1,), int64
        Cluster ``c`` holds grouped positions ``starts[c]:starts[c + 1]``.
    centroids : ndarray of shape (n_clusters, d), float64
    radii : ndarray of shape (n_clusters,), float64
        Upper bounds of ``||r - centroid||`` over the cluster's rows (padded for rounding).
    rows : ndarray of shape (n, d), float32
        ``-2 (r - mu)`` of the grouped rows, the selection's reference operand.
    norms : ndarray of shape (n,), float32
        ``||r - mu||^2`` of the grouped rows.
    rmax : float
        ``max ||r - mu||`` over the block (the certificate's error bound).
    """

    order: np.ndarray
    starts: np.ndarray
    centroids: np.ndarray
    radii: np.ndarray
    rows: np.ndarray
    norms: np.ndarray
    rmax: float

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def nbytes(self) -> int:
        arrays = (self.order, self.starts, self.centroids, self.radii, self.rows, self.norms)
        return int(sum(a.nbytes for a in arrays))


def _nearest(X: np.ndarray, C: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Nearest centre of every row, by float32 products of slabs shifted by ``mu``.

    float32 halves the cost of the index's largest step (every row against ``n / 2048``
    centres) against float64; a row put in a slightly farther cluster by rounding only
    widens that cluster's radius, which is computed exactly from its actual members.
    """
    Cs = np.asarray(C - mu, dtype=np.float32)
    cn = np.einsum("ij,ij->i", Cs, Cs)
    Ct = np.ascontiguousarray(-2.0 * Cs.T)  # scaling by -2 is exact
    out = np.empty(X.shape[0], dtype=np.int64)
    for a in range(0, X.shape[0], _ASSIGN_ROWS):
        S = np.asarray(X[a : a + _ASSIGN_ROWS] - mu, dtype=np.float32)
        P = S @ Ct
        P += cn  # in place: the slab's products stay in cache (0.115 -> 0.052 s, 250k x 122)
        out[a : a + S.shape[0]] = np.argmin(P, axis=1)
    return out


def nearest_cluster(X: np.ndarray, index: ClusterIndex, mu: np.ndarray) -> np.ndarray:
    """The landmark cluster nearest each row of ``X`` (by float32 products: a row's region
    for ordering a search, never for a bound)."""
    return _nearest(X, index.centroids, mu)


def _landmarks(X: np.ndarray, mu: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Centres of a few Lloyd iterations on a seeded sample of the rows."""
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    m = min(n, _SAMPLE_PER_CLUSTER * n_clusters)
    S = np.asarray(X[np.sort(rng.choice(n, size=m, replace=False))], dtype=np.float64)
    C = S[rng.choice(m, size=n_clusters, replace=False)].copy()
    for _ in range(_ITERATIONS):
        lab = _nearest(S, C, mu)
        counts = np.bincount(lab, minlength=n_clusters)
        sums = np.zeros_like(C)
        np.add.at(sums, lab, S)
        full = counts > 0  # an empty centre keeps its place: a landmark, not a model
        C[full] = sums[full] / counts[full, None]
    return C


def _chain(C: np.ndarray) -> np.ndarray:
    """A greedy nearest-neighbour path through the centres, so that near clusters get near
    numbers: queries sorted by nearest cluster then fill a tile from one region."""
    cn = np.einsum("ij,ij->i", C, C)
    D2 = cn[:, None] - 2.0 * (C @ C.T) + cn[None, :]
    path = np.empty(C.shape[0], dtype=np.int64)
    cur = 0
    for step in range(C.shape[0]):
        path[step] = cur
        D2[:, cur] = np.inf
        cur = int(np.argmin(D2[cur]))
    return path


@njit(nogil=True, cache=True)
def _cluster_stats(X, order, starts, mu, centroids, radii, rows, norms):
    """Centroid (member mean) and radius per cluster, each cluster's rows re-ordered nearest
    to its centroid first (``order`` in place), and the grouped selection operands.

    The order is a speed-up only: a query's candidate heap fills with near rows early, so
    fewer later rows replace one (one thread, 10,000 clustered queries x 250,000 rows,
    d = 32: 0.353 -> 0.325 s per pruned search; results identical).

    Returns ``max ||r - mu||^2`` over the block.
    """
    d = X.shape[1]
    rmax2 = 0.0
    for c in range(starts.shape[0] - 1):
        s, e = starts[c], starts[c + 1]
        for t in range(d):
            centroids[c, t] = 0.0
        for p in range(s, e):
            for t in range(d):
                centroids[c, t] += np.float64(X[order[p], t])
        for t in range(d):
            centroids[c, t] /= e - s
        dcs = np.empty(e - s)
        for p in range(s, e):
            dc = 0.0
            for t in range(d):
                u = np.float64(X[order[p], t]) - centroids[c, t]
                dc += u * u
            dcs[p - s] = dc
        members = order[s:e][np.argsort(dcs, kind="mergesort")]
        order[s:e] = members
        for p in range(s, e):
            j = order[p]
            dm = 0.0
            for t in range(d):
                v = np.float64(X[j, t]) - mu[t]
                dm += v * v
                rows[p, t] = -2.0 * v  # scaling by -2 is exact
            norms[p] = dm
            rmax2 = max(rmax2, dm)
        radii[c] = np.sqrt(dcs.max())
    return rmax2


def build_index(
    X: np.ndarray, mu: np.ndarray, seed: int = 0, cluster_rows: int = CLUSTER_ROWS
) -> ClusterIndex | None:
    """Group the rows of a reference block by landmark cluster.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The reference block as stored.
    mu : ndarray of shape (d,), float64
        Reference point of the selection (the reference mean, as in ``block_topk``).
    seed : int
        Seed of the sample and the initial centres (the index does not change results).
    cluster_rows : int
        Target rows per cluster.

    Returns
    -------
    ClusterIndex or None
        None when the block would get fewer than :data:`MIN_CLUSTERS` clusters.
    """
    n, d = X.shape
    n_clusters = n // max(int(cluster_rows), 1)
    if n_clusters < MIN_CLUSTERS:
        return None
    mu = np.asarray(mu, dtype=np.float64)
    centres = _landmarks(X, mu, n_clusters, seed)
    labels = _nearest(X, centres[_chain(centres)], mu)
    counts = np.bincount(labels, minlength=n_clusters)
    order = np.argsort(labels, kind="stable").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
    k = starts.shape[0] - 1
    centroids = np.empty((k, d))
    radii = np.empty(k)
    rows = np.empty((n, d), dtype=np.float32)
    norms = np.empty(n, dtype=np.float32)
    rmax2 = _cluster_stats(X, order, starts, mu, centroids, radii, rows, norms)
    # a radius is a d-term float64 sum and a square root: relative error below (d + 2) u
    radii *= 1.0 + 4.0 * (d + 4) * _U64
    return ClusterIndex(order, starts, centroids, radii, rows, norms, float(np.sqrt(rmax2)))
