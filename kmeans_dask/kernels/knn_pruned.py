"""Pruned exact top-k of one (query block, reference block) pair: the landmark clusters of
:mod:`kmeans_dask.kernels.knn_index` skip most reference rows, with the same answer as
:func:`kmeans_dask.kernels.knn.block_topk` (numpy + numba, no Dask).

How
---
The query rows are grouped by their nearest landmark centroid and walked in tiles of
:data:`TILE_QUERY` rows. A tile visits the clusters in the order of
its smallest centroid distance; for each cluster, only the tile's rows whose lower bound
``(||q - c|| - radius_c)^2`` does not exceed their current candidate threshold
``||q - mu||^2 + A_q`` (``A_q`` the worst of the row's float32 candidates) take part in
one float32 GEMM with the cluster's rows; a cluster no row of the tile needs is skipped.
The selection, the exact float64 refinement of the candidates and the certificate are those
of the plain kernel: a skipped row has a true squared distance above ``||q - mu||^2 + A_q``,
exactly what the certificate assumes of a row outside the heap, so a certified row is exact
and equal to the plain result (same ``_sqdist`` values, ties by the lower block row).
Rows that fail the certificate go through the plain kernel's float64 pass and exact scan.

The bounds are rigorous lower bounds in float64: the centroid distance from the expanded
form minus its rounding error ``2 (d + 4) u (||q - mu|| + ||c - mu||)^2``, the radius padded
at build time, then a relative margin of a few ulps.

``mode='auto'`` first searches a probe of :data:`PROBE_ROWS` query rows (tiles of a few
regions, evenly spaced in the search's order); when they skip less than
:data:`AUTO_MIN_SKIP` of the distances, the rest of the block takes the plain kernel
(pruning cannot pay there: heavy overlap, structureless data). :func:`prunable` runs the
same probe once per reference block, with the block's own rows as the queries, so
that an index that cannot pay is dropped before any search pays for probes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import knn_index as ki
from .knn import (
    _FAST,
    _U32,
    _U64,
    PAD_INDEX,
    _empty_heap,
    _offer_row,
    _padded,
    _refine,
    block_topk,
    n_candidates,
)
from .knn_index import ClusterIndex

__all__ = [
    "AUTO_KEEP_SKIP",
    "AUTO_MIN_SKIP",
    "MODES",
    "PROBE_ROWS",
    "QUERY_SLAB",
    "TILE_QUERY",
    "TILE_REF",
    "prunable",
    "pruned_topk",
]

#: Query rows per tile (rows of one region: a tile's rows share the clusters they need, so
#: a smaller tile than the plain kernel's keeps the products' active rows dense).
TILE_QUERY = 128
#: Reference rows per GEMM, within one cluster.
TILE_REF = 1024

#: Query rows probed by ``mode='auto'`` before it decides for the rest of the block.
PROBE_ROWS = 256
#: Least fraction of skipped distances on the probe for ``auto`` to keep pruning.
AUTO_MIN_SKIP = 0.4
#: Least fraction skipped by a block's own rows for ``auto`` to keep its index (half of
#: :data:`AUTO_MIN_SKIP`: only a hopeless index is dropped; between the two, each search's
#: probe of its actual queries decides).
AUTO_KEEP_SKIP = 0.2
#: Query rows whose bounds (``QUERY_SLAB x n_clusters`` float64, twice) are held at once.
QUERY_SLAB = 4096
MODES = ("pruned", "auto")


def _bounds(Qsh: np.ndarray, qn2: np.ndarray, index: ClusterIndex, mu: np.ndarray):
    """Lower bounds of the squared distance of each query to each cluster's rows, and the
    (approximate) squared centroid distances."""
    d = Qsh.shape[1]
    Csh = index.centroids - mu
    cn2 = np.einsum("ij,ij->i", Csh, Csh)
    cd2 = qn2[:, None] - 2.0 * (Qsh @ Csh.T) + cn2[None, :]
    err = 2.0 * (d + 4) * _U64 * (np.sqrt(qn2)[:, None] + np.sqrt(cn2)[None, :]) ** 2
    low = np.sqrt(np.maximum(cd2 - err, 0.0)) * (1.0 - 4.0 * _U64)
    lb = np.maximum(low - index.radii[None, :], 0.0)
    return lb * lb * (1.0 - 8.0 * _U64), cd2


@njit(nogil=True, cache=True, fastmath=_FAST)
def _select_pruned(Qs, qn2, lbd2, cd2, qorder, rows, norms, starts, hv, hi):
    """The float32 selection of ``knn._select`` over the clusters each tile cannot skip.

    Heap indices are grouped positions. Returns the number of distances computed.
    """
    nq, d = Qs.shape
    n_clusters = starts.shape[0] - 1
    tq = TILE_QUERY
    Qa = np.empty((tq, d), dtype=Qs.dtype)
    act = np.empty(tq, dtype=np.int64)
    G = np.empty(tq * TILE_REF, dtype=Qs.dtype)
    key = np.empty(n_clusters)
    flags = np.zeros(8 * ((TILE_REF + 7) // 8), dtype=np.uint8)
    words = flags.view(np.uint64)
    computed = 0
    for t0 in range(0, nq, tq):
        mt = min(tq, nq - t0)
        for c in range(n_clusters):
            best = np.inf
            for a in range(mt):
                best = min(best, cd2[qorder[t0 + a], c])
            key[c] = best
        for c in np.argsort(key):
            na = 0
            for a in range(mt):
                i = qorder[t0 + a]
                if lbd2[i, c] <= qn2[i] + hv[i, 0]:
                    act[na] = i
                    for t in range(d):
                        Qa[na, t] = Qs[i, t]
                    na += 1
            if na == 0:
                continue
            for r0 in range(starts[c], starts[c + 1], TILE_REF):
                m = min(TILE_REF, starts[c + 1] - r0)
                g = G[: na * m].reshape((na, m))
                np.dot(Qa[:na], rows[r0 : r0 + m].T, g)
                computed += na * m
                for a in range(na):
                    _offer_row(g[a], norms, r0, m, r0, act[a], hv, hi, flags, words, False)
    return computed


def _pruned_pass(Q: np.ndarray, X: np.ndarray, index: ClusterIndex, k: int, mu: np.ndarray):
    """Pruned float32 selection + exact refinement: (d2, block rows, certified, computed)."""
    Qsh = np.asarray(Q, dtype=np.float64) - mu
    qn2 = np.einsum("ij,ij->i", Qsh, Qsh)
    lbd2, cd2 = _bounds(Qsh, qn2, index, mu)
    qorder = np.argsort(np.argmin(cd2, axis=1), kind="stable").astype(np.int64)
    hv, hi = _empty_heap(Q.shape[0], n_candidates(k), np.float32)
    Qs = np.ascontiguousarray(Qsh, dtype=np.float32)
    computed = _select_pruned(
        Qs, qn2, lbd2, cd2, qorder, index.rows, index.norms, index.starts, hv, hi
    )
    out_d, out_i = _padded(Q.shape[0], k)
    ok = np.empty(Q.shape[0], dtype=np.bool_)
    qnorm = np.sqrt(qn2)
    _refine(Q, X, hv, hi, k, qnorm, index.rmax, _U32, out_d, out_i, ok, index.order, qorder)
    return out_d, out_i, ok, int(computed)


def _pruned_rows(Q, X, index, k, mu, rows, out_d, out_i) -> int:
    """Pruned search of the query ``rows`` into the outputs; returns distances computed."""
    computed = 0
    for a in range(0, rows.size, QUERY_SLAB):
        sel = rows[a : a + QUERY_SLAB]
        dd, ii, ok, n = _pruned_pass(np.ascontiguousarray(Q[sel]), X, index, k, mu)
        computed += n
        out_d[sel[ok]] = dd[ok]
        out_i[sel[ok]] = ii[ok]
        bad = sel[~ok]
        if bad.size:  # the plain kernel's float64 pass (and exact scan), unpruned
            dd, ii, _ = block_topk(np.ascontiguousarray(Q[bad]), X, k, mu, 0, (np.float64,))
            out_d[bad] = dd
            out_i[bad] = ii
            computed += bad.size * X.shape[0]
    return computed


def pruned_topk(
    Q: np.ndarray,
    X: np.ndarray,
    index: ClusterIndex | None,
    k: int,
    mu: np.ndarray,
    offset: int = 0,
    mode: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact k nearest rows of reference block ``X`` for every row of ``Q``, skipping the
    landmark clusters that cannot hold a neighbour; equal to ``block_topk``'s result.

    Parameters
    ----------
    Q : ndarray of shape (n_query, d)
    X : ndarray of shape (n_ref, d)
        The reference block as stored (the exact distances are computed from it).
    index : ClusterIndex or None
        ``build_index(X, mu)``; None searches with the plain kernel.
    k : int
    mu : ndarray of shape (d,), float64
        The reference point the index was built with.
    offset : int
        Global row number of ``X[0]``.
    mode : {'auto', 'pruned'}
        ``'auto'`` takes the plain kernel for the block when a probe of the queries
        skips less than :data:`AUTO_MIN_SKIP` of the distances.

    Returns
    -------
    sq_dist, index : ndarrays of shape (n_query, k)
        As :func:`~kmeans_dask.kernels.knn.block_topk`.
    counts : ndarray of shape (2,), int64
        Distances computed by the selection, and ``n_query * n_ref``.
    """
    nq, n = Q.shape[0], X.shape[0]
    mu = np.asarray(mu, dtype=np.float64)
    total = nq * n
    if index is None or nq == 0 or n == 0:
        d2, idx, _ = block_topk(Q, X, k, mu, offset)
        return d2, idx, np.array([total, total], dtype=np.int64)
    out_d, out_i = _padded(nq, k)
    rows = np.arange(nq)
    computed = 0
    if mode == "auto" and nq > PROBE_ROWS:
        probe = _probe_rows(ki.nearest_cluster(Q, index, mu))
        computed = _pruned_rows(Q, X, index, k, mu, probe, out_d, out_i)
        rows = np.setdiff1d(rows, probe)
        if not _pays(computed, probe.size, n):
            dd, ii, _ = block_topk(np.ascontiguousarray(Q[rows]), X, k, mu, 0)
            out_d[rows] = dd
            out_i[rows] = ii
            rows = rows[:0]
            computed += (nq - probe.size) * n
    computed += _pruned_rows(Q, X, index, k, mu, rows, out_d, out_i)
    real = out_i != PAD_INDEX
    out_i[real] += offset
    return out_d, out_i, np.array([computed, total], dtype=np.int64)


def _probe_rows(region: np.ndarray) -> np.ndarray:
    """:data:`PROBE_ROWS` rows in runs of :data:`TILE_QUERY` rows of the search's order
    (sorted by ``region``, their nearest landmark), evenly spaced in it: each run is one
    tile of a region, as the search visits them. (Evenly spaced rows, each from another
    region, made tiles that needed most clusters: ``auto`` paid 0.3-0.4 s of 5.6 s for its
    probes on clustered data, ``bench_knn.py``, session 23.)"""
    n = region.shape[0]
    if n <= PROBE_ROWS:
        return np.arange(n)
    order = np.argsort(region, kind="stable")
    runs = PROBE_ROWS // TILE_QUERY
    firsts = ((np.arange(runs) + 0.5) * n / runs - TILE_QUERY / 2).astype(np.int64)
    firsts = np.clip(firsts, 0, n - TILE_QUERY)
    return np.unique(np.concatenate([order[f : f + TILE_QUERY] for f in firsts]))


def _pays(computed: int, n_probe: int, n_ref: int, least: float = AUTO_MIN_SKIP) -> bool:
    return computed <= (1.0 - least) * n_probe * n_ref


def prunable(X: np.ndarray, index: ClusterIndex, k: int, mu: np.ndarray) -> bool:
    """Whether ``index`` can pay for itself: a pruned search of :data:`PROBE_ROWS` rows of
    the block itself (as queries, ``k`` neighbours; tiles of a few of its clusters, as for
    ``auto``'s probe) skips at least :data:`AUTO_KEEP_SKIP` of their distances.

    The block's rows stand for the queries to come (new rows of the same kind). Where they
    cannot prune (structureless or heavily overlapping data: every cluster's radius is about
    its distance to the others) no query can prune much either, so ``algorithm='auto'`` drops
    the index and its per-search probes. Costs about 2 x ``PROBE_ROWS`` plain rows.
    """
    region = np.empty(X.shape[0], dtype=np.int64)
    region[index.order] = np.repeat(np.arange(index.n_clusters), np.diff(index.starts))
    probe = _probe_rows(region)
    out_d, out_i = _padded(probe.size, k)
    Q = np.ascontiguousarray(X[probe])
    computed = _pruned_rows(Q, X, index, k, mu, np.arange(probe.size), out_d, out_i)
    return _pays(computed, probe.size, X.shape[0], AUTO_KEEP_SKIP)
