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


def silhouette_rows(
    rows: np.ndarray,
    row_index: np.ndarray,
    sample: np.ndarray,
    labels: np.ndarray,
    ks: np.ndarray,
    block: int = 1024,
) -> np.ndarray:
    """Exact Euclidean silhouettes of ``rows`` for several labellings of the same sample.

    ``labels`` is (n_sample, n_labellings), column ``j`` in ``0 .. ks[j] - 1``. Each block of
    pairwise distances is computed once and summed per cluster of every labelling with one
    product against the stacked one-hot matrix. ``rows`` are part of the sample, at
    positions ``row_index``; per labelling the result is
    ``sklearn.metrics.silhouette_samples`` of those rows. Distances are computed ``block``
    rows at a time (never n x n); the caller centres the data. Returns
    (n_rows, n_labellings).
    """
    S = np.asarray(sample, dtype=np.float64)
    n = S.shape[0]
    ss = np.einsum("ij,ij->i", S, S)
    offsets = np.concatenate([[0], np.cumsum(ks)])
    onehot = np.zeros((n, int(offsets[-1])))
    counts = []
    for j, k in enumerate(ks):
        onehot[np.arange(n), offsets[j] + labels[:, j]] = 1.0
        counts.append(np.bincount(labels[:, j], minlength=int(k)).astype(np.float64))
    out = np.empty((rows.shape[0], len(ks)))
    for start in range(0, rows.shape[0], block):
        R = np.asarray(rows[start : start + block], dtype=np.float64)
        m = R.shape[0]
        D = np.einsum("ij,ij->i", R, R)[:, None] - 2.0 * (R @ S.T) + ss[None, :]
        np.maximum(D, 0.0, out=D)
        np.sqrt(D, out=D)
        D[np.arange(m), row_index[start : start + block]] = 0.0
        sums = D @ onehot  # (m, sum of ks): distance sums per cluster of every labelling
        for j in range(len(ks)):
            per_cluster = sums[:, offsets[j] : offsets[j + 1]]
            lab = labels[row_index[start : start + block], j]
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
