"""Pure per-chunk kernels of the cluster-quality metrics (numpy; no Dask, no I/O).

Each returns partials that add up over chunks. Inputs are validated upstream.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "cluster_stats",
    "dispersion",
    "silhouette_rows",
    "spark_silhouette_sum",
    "stratified_candidates",
]


def cluster_stats(
    X: np.ndarray, labels: np.ndarray, k: int, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster (weight, weighted feature sum, weighted squared-norm sum), in float64.

    ``X`` should be centred on a reference point by the caller when it is far from the
    origin (the squared norms are used in expanded forms).
    """
    wv = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    X64 = np.asarray(X, dtype=np.float64)
    weight = np.bincount(labels, weights=wv, minlength=k)
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, labels, X64 * wv[:, None])
    sq = np.bincount(labels, weights=wv * np.einsum("ij,ij->i", X64, X64), minlength=k)
    return weight, sums, sq


def dispersion(X: np.ndarray, labels: np.ndarray, means: np.ndarray) -> tuple[float, np.ndarray]:
    """Exact within-cluster sum of squares and per-cluster sum of Euclidean distances to
    the cluster means (Calinski-Harabasz and Davies-Bouldin numerators)."""
    diff = np.asarray(X, dtype=np.float64) - means[labels]
    sq = np.einsum("ij,ij->i", diff, diff)
    dist_sum = np.bincount(labels, weights=np.sqrt(sq), minlength=means.shape[0])
    return float(sq.sum()), dist_sum


def spark_silhouette_sum(
    X: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    sums: np.ndarray,
    sq: np.ndarray,
    w: np.ndarray | None = None,
) -> float:
    """Sum over rows of ``w * s(x)`` for Spark's squared-Euclidean silhouette.

    The mean squared distance of ``x`` to cluster ``C`` is
    ``||x||^2 - 2 x.S_C / W_C + Q_C / W_C`` (``S`` feature sum, ``Q`` squared-norm sum,
    ``W`` weight), so a row costs O(k d) whatever the cluster sizes. Own-cluster
    dissimilarity excludes the row itself (scaled by ``W / (W - w)``); a row alone in its
    cluster scores 0 (Spark's ``ClusteringEvaluator`` definition).
    """
    X64 = np.asarray(X, dtype=np.float64)
    wv = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    xx = np.einsum("ij,ij->i", X64, X64)
    safe = np.where(weight > 0, weight, 1.0)
    mean_d = xx[:, None] - 2.0 * (X64 @ (sums / safe[:, None]).T) + (sq / safe)[None, :]
    mean_d = np.maximum(mean_d, 0.0)
    mean_d[:, weight <= 0] = np.inf  # empty clusters are not neighbours
    rows = np.arange(X.shape[0])
    own_w = weight[labels]
    single = own_w <= wv
    a = mean_d[rows, labels] * own_w / np.where(single, 1.0, own_w - wv)
    other = mean_d.copy()
    other[rows, labels] = np.inf
    b = other.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(a < b, 1.0 - a / b, np.where(a > b, b / a - 1.0, 0.0))
    s = np.where(single | ~np.isfinite(b), 0.0, s)
    return float((s * wv).sum())


def stratified_candidates(
    u: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose draw ``u`` is below their cluster's threshold: ``(u, global index, local)``."""
    pick = np.flatnonzero(u < thresholds[labels])
    return u[pick], pick + offset, pick


def silhouette_rows(
    rows: np.ndarray,
    row_labels: np.ndarray,
    row_index: np.ndarray,
    sample: np.ndarray,
    sample_labels: np.ndarray,
    k: int,
    block: int = 1024,
) -> np.ndarray:
    """Exact Euclidean silhouette of ``rows`` against the whole ``sample`` (rows are part of
    it, at positions ``row_index``), as ``sklearn.metrics.silhouette_samples`` defines it.

    Distances are computed block by block (``block`` rows at a time), never as an
    n x n matrix; the data should be centred by the caller.
    """
    S = np.asarray(sample, dtype=np.float64)
    ss = np.einsum("ij,ij->i", S, S)
    counts = np.bincount(sample_labels, minlength=k).astype(np.float64)
    onehot = np.zeros((S.shape[0], k))
    onehot[np.arange(S.shape[0]), sample_labels] = 1.0
    out = np.empty(rows.shape[0])
    for start in range(0, rows.shape[0], block):
        R = np.asarray(rows[start : start + block], dtype=np.float64)
        rr = np.einsum("ij,ij->i", R, R)
        D = rr[:, None] - 2.0 * (R @ S.T) + ss[None, :]
        np.maximum(D, 0.0, out=D)
        np.sqrt(D, out=D)
        idx = row_index[start : start + block]
        D[np.arange(R.shape[0]), idx] = 0.0  # a row's distance to itself
        per_cluster = D @ onehot  # (b, k) sums of distances
        lab = row_labels[start : start + block]
        n_own = counts[lab]
        a = per_cluster[np.arange(R.shape[0]), lab] / np.maximum(n_own - 1, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_other = per_cluster / counts[None, :]
        mean_other[np.arange(R.shape[0]), lab] = np.inf
        mean_other[:, counts == 0] = np.inf
        b = mean_other.min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = (b - a) / np.maximum(a, b)
        s[(n_own <= 1) | ~np.isfinite(s)] = 0.0
        out[start : start + block] = s
    return out
