"""Pure per-chunk kernels of the cluster-quality metrics (numpy; no Dask, no I/O).

Each returns partials that add up over chunks. Inputs are validated upstream.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "cluster_quality_partials",
    "cluster_stats",
    "silhouette_rows",
    "stratified_candidates",
]


_FAST = {"reassoc", "contract", "nsz", "arcp"}  # vectorisable sums; no nnan/ninf
_BLOCK = 1024


@njit(nogil=True, cache=True, fastmath=_FAST)
def _stats_kernel(X, labels, w, has_w, ref, W, S, Q, counts, P):
    n, d = X.shape
    for i in range(n):
        c = labels[i]
        wi = w[i] if has_w else 1.0
        q = 0.0
        for t in range(d):
            v = np.float64(X[i, t]) - ref[t]
            S[c, t] += wi * v
            P[c, t] += v
            q += v * v
        W[c] += wi
        Q[c] += wi * q
        counts[c] += 1


def cluster_stats(
    X: np.ndarray, labels: np.ndarray, k: int, ref: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster statistics of a chunk, relative to the reference point ``ref``, in one
    compiled pass (no temporary copy of the chunk).

    Returns
    -------
    weight : (k,) summed sample weights
    sums : (k, d) weighted sums of ``x - ref``
    sq : (k,) weighted sums of ``||x - ref||^2``
    counts : (k,) row counts
    plain : (k, d) unweighted sums of ``x - ref``
    """
    d = X.shape[1]
    W = np.zeros(k)
    S = np.zeros((k, d))
    Q = np.zeros(k)
    counts = np.zeros(k, dtype=np.int64)
    P = np.zeros((k, d))
    has_w = w is not None
    wv = np.asarray(w, dtype=np.float64) if has_w else np.empty(0)
    _stats_kernel(
        np.ascontiguousarray(X),
        labels.astype(np.int64),
        wv,
        has_w,
        np.asarray(ref, dtype=np.float64),
        W,
        S,
        Q,
        counts,
        P,
    )
    return W, S, Q, counts, P


@njit(nogil=True, cache=True, fastmath=_FAST)
def _quality_kernel(X, labels, w, has_w, ref, MT, r, q, W, means, dist_sum):
    n, d = X.shape
    k = MT.shape[1]
    G = np.empty((_BLOCK, k), dtype=X.dtype)
    md = np.empty(k)
    sil = 0.0
    within = 0.0
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        Gb = G[: stop - start]
        np.dot(X[start:stop], MT, Gb)
        for i in range(stop - start):
            row = start + i
            c = labels[row]
            wi = w[row] if has_w else 1.0
            xx = 0.0
            ssq = 0.0
            for t in range(d):
                v = np.float64(X[row, t]) - ref[t]
                xx += v * v
                e = v - means[c, t]
                ssq += e * e
            within += ssq
            dist_sum[c] += np.sqrt(ssq)
            # mean squared distance to every cluster, from its sums (Spark's O(k d) form)
            for j in range(k):
                if W[j] > 0:
                    val = xx - 2.0 * (np.float64(Gb[i, j]) - r[j]) + q[j]
                    md[j] = val if val > 0.0 else 0.0
                else:
                    md[j] = np.inf
            if W[c] <= wi:  # alone in its cluster: 0 by definition
                continue
            a = md[c] * W[c] / (W[c] - wi)
            b = np.inf
            for j in range(k):
                if j != c and md[j] < b:
                    b = md[j]
            if b == np.inf:
                continue
            if a < b:
                sil += wi * (1.0 - a / b)
            elif a > b:
                sil += wi * (b / a - 1.0)
    return sil, within


def cluster_quality_partials(
    X: np.ndarray,
    labels: np.ndarray,
    ref: np.ndarray,
    weight: np.ndarray,
    sums: np.ndarray,
    sq: np.ndarray,
    means: np.ndarray,
    w: np.ndarray | None = None,
) -> tuple[float, float, np.ndarray]:
    """One compiled pass over a chunk for three metrics.

    Returns ``(sum of w * s(x), within-cluster sum of squares, per-cluster sum of Euclidean
    distances to the means)``: ``s`` is Spark's squared-Euclidean silhouette, whose mean
    squared distance of ``x`` to cluster ``C`` is ``||x||^2 - 2 x.S_C / W_C + Q_C / W_C``
    (all relative to ``ref``), so a row costs O(k d) whatever the cluster sizes; the own
    cluster excludes the row itself (``W / (W - w)``), and a row alone in its cluster
    scores 0 (Spark's ``ClusteringEvaluator`` definition). The other two use the
    unweighted cluster ``means`` (relative to ``ref``), as scikit-learn's
    Calinski-Harabasz and Davies-Bouldin do.
    """
    safe = np.where(weight > 0, weight, 1.0)
    M = sums / safe[:, None]  # weighted cluster means (relative to ref)
    ref64 = np.asarray(ref, dtype=np.float64)
    X = np.ascontiguousarray(X)
    MT = np.ascontiguousarray(M.T.astype(X.dtype))
    r = (M @ ref64).astype(np.float64)  # x.m = (x - ref).m + ref.m
    q = sq / safe
    has_w = w is not None
    wv = np.asarray(w, dtype=np.float64) if has_w else np.empty(0)
    dist_sum = np.zeros(M.shape[0])
    sil, within = _quality_kernel(
        X, labels.astype(np.int64), wv, has_w, ref64, MT, r, q, weight, means, dist_sum
    )
    return float(sil), float(within), dist_sum


def stratified_candidates(
    u: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose draw ``u`` is below their cluster's threshold: ``(u, global index, local)``."""
    pick = np.flatnonzero(u < thresholds[labels])
    return u[pick], pick + offset, pick


# No fastmath flags here: a reassociated sum was ordered differently by a fresh numba compile
# than by the cached one (seen: the last bit of a silhouette differed between the client and
# the workers). Every loop below is element by element across rows (vectorised without
# reordering any sum); each sum runs over the sample columns in their order.
@njit(nogil=True, cache=True)
def _run_sums(G, rr, ss, c0, run_of, own_row, acc, dv):
    # acc[r, i] += the distance from row i to every sample column c0 <= c < c0 + G.shape[0]
    # of run r = run_of[c]; G[c - c0, i] holds the product, own_row[c - c0] the row whose own
    # column c is (-1: none), whose distance 0 is added instead (exactly); dv: m values
    tc, m = G.shape
    for c in range(tc):
        v2 = ss[c0 + c]
        g = G[c]
        for i in range(m):
            v = rr[i] + v2 - 2.0 * g[i]
            dv[i] = np.sqrt(v) if v > 0.0 else 0.0
        if own_row[c] >= 0:
            dv[own_row[c]] = 0.0
        a = acc[run_of[c0 + c]]
        for i in range(m):
            a[i] += dv[i]


def silhouette_rows(
    rows: np.ndarray,
    row_index: np.ndarray,
    sample: np.ndarray,
    labels: np.ndarray,
    ks: np.ndarray,
    block: int = 256,
    chunk: int = 1024,
) -> np.ndarray:
    """Exact Euclidean silhouettes of ``rows`` for several labellings of the same sample.

    ``labels`` is (n_sample, n_labellings), column ``j`` in ``0 .. ks[j] - 1``. The sample
    is ordered by its joint labels, so that a run of consecutive sample rows shares its
    cluster in every labelling: each distance is computed once (one product per tile of
    ``block`` rows x ``chunk`` sample rows, a tile of values that stays in cache) and added
    to its run's sum, for all the tile's rows at once (vectorised across rows, so short runs
    cost no more than long ones); each run's sums then go to one cluster of every labelling
    (one product with the runs' one-hot matrix per ``block`` rows). ``rows`` are part of the
    sample, at positions ``row_index``; per labelling the result is
    ``sklearn.metrics.silhouette_samples`` of those rows. The caller centres the data (the
    expanded distances stay accurate). Returns (n_rows, n_labellings).
    """
    S = np.asarray(sample, dtype=np.float64)
    n = S.shape[0]
    labels = np.asarray(labels, dtype=np.int64)
    ks = np.asarray(ks, dtype=np.int64)
    runs, run_of = np.unique(labels, axis=0, return_inverse=True)
    run_of = run_of.reshape(-1)
    order = np.argsort(run_of, kind="stable")
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    S = np.ascontiguousarray(S[order])
    ss = np.einsum("ij,ij->i", S, S)
    offsets = np.concatenate([[0], np.cumsum(ks)])
    onehot = np.zeros((runs.shape[0], int(offsets[-1])))
    counts = []
    for j, k in enumerate(ks):
        onehot[np.arange(runs.shape[0]), offsets[j] + runs[:, j]] = 1.0
        counts.append(np.bincount(labels[:, j], minlength=int(k)).astype(np.float64))
    run_sorted = np.ascontiguousarray(run_of[order])
    out = np.empty((rows.shape[0], len(ks)))
    acc = np.empty((runs.shape[0], block))
    buf = np.empty(block * chunk)  # the products of one tile (C-contiguous for np.dot's out)
    dv = np.empty(block)
    own_row = np.empty(chunk, dtype=np.int64)
    for start in range(0, rows.shape[0], block):
        R = np.asarray(rows[start : start + block], dtype=np.float64)
        m = R.shape[0]
        idx = np.asarray(row_index[start : start + m], dtype=np.int64)
        own = position[idx]
        rr = np.einsum("ij,ij->i", R, R)
        a_m = acc[:, :m]
        a_m[:] = 0.0
        for c0 in range(0, n, chunk):
            c1 = min(c0 + chunk, n)
            Gt = buf[: m * (c1 - c0)].reshape(c1 - c0, m)
            np.dot(S[c0:c1], R.T, out=Gt)
            own_row[:] = -1
            here = (own >= c0) & (own < c1)
            own_row[own[here] - c0] = np.flatnonzero(here)
            _run_sums(Gt, rr, ss, c0, run_sorted, own_row, a_m, dv)
        sums = a_m.T @ onehot  # (m, sum of ks): distance sums per cluster of every labelling
        for j in range(len(ks)):
            per_cluster = sums[:, offsets[j] : offsets[j + 1]]
            lab = labels[idx, j]
            cnt = counts[j]
            n_own = cnt[lab]
            a = per_cluster[np.arange(m), lab] / np.maximum(n_own - 1, 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_other = per_cluster / cnt[None, :]
            mean_other[np.arange(m), lab] = np.inf
            mean_other[:, cnt == 0] = np.inf
            b = mean_other.min(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                s = (b - a) / np.maximum(a, b)
            s[(n_own <= 1) | ~np.isfinite(s)] = 0.0
            out[start : start + m, j] = s
    return out
