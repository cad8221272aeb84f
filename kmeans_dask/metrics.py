"""Clustering metrics as map-reduce over chunks (no row is gathered to the caller)."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np

from .engine.prepare import load_blocks, prepare_input
from .engine.quality import ClusterQuality, block_labels, cluster_quality
from .engine.silhouette import (
    label_counts,
    sample_silhouette,
    shared_sample_silhouettes,
    stratified_sample,
)
from .exceptions import InputError

__all__ = [
    "ClusterQuality",
    "adjusted_rand_score",
    "calinski_harabasz_score",
    "cluster_quality",
    "contingency_matrix",
    "davies_bouldin_score",
    "sample_silhouette",
    "shared_sample_silhouettes",
    "silhouette_full_sq_score",
    "silhouette_sample_score",
    "stratified_sample",
]


def _pair_counts(a: np.ndarray, b: np.ndarray, n_b: int, size: int) -> np.ndarray:
    return np.bincount(a.astype(np.int64) * n_b + b.astype(np.int64), minlength=size)


def _range(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    if a.size == 0:
        return 0, -1, -1
    return int(min(a.min(), b.min())), int(a.max()), int(b.max())


def contingency_matrix(labels_a: Any, labels_b: Any) -> np.ndarray:
    """Counts of every (label_a, label_b) pair, shape (max_a + 1, max_b + 1).

    Labels are non-negative integers (numpy or dask arrays of the same length).
    """
    a = da.asarray(labels_a)
    b = da.asarray(labels_b)
    if a.shape != b.shape:
        raise InputError(
            f"labels_true and labels_pred must have the same shape; got {a.shape} and "
            f"{b.shape}."
        )
    b = b.rechunk(a.chunks)
    # one graph style for both passes (unoptimised), so keys never clash between submissions
    pa = a.to_delayed(optimize_graph=False).ravel()
    pb = b.to_delayed(optimize_graph=False).ravel()
    ranges = dask.compute(*[dask.delayed(_range)(x, y) for x, y in zip(pa, pb, strict=True)])
    lo = min(r[0] for r in ranges)
    if lo < 0:
        raise InputError(
            f"labels must be non-negative integers (cluster indices); the smallest is {lo}."
        )
    n_a = int(max(r[1] for r in ranges)) + 1
    n_b = int(max(r[2] for r in ranges)) + 1
    task = dask.delayed(_pair_counts, pure=True)
    parts = [task(x, y, n_b, n_a * n_b) for x, y in zip(pa, pb, strict=True)]
    total = np.sum(dask.compute(*parts), axis=0)  # small histograms, one per chunk
    return total.reshape(n_a, n_b)


def _comb2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x * (x - 1) / 2


def adjusted_rand_score(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from a map-reduced contingency table.

    Equals :func:`sklearn.metrics.adjusted_rand_score` on the same labels.
    """
    c = contingency_matrix(labels_true, labels_pred)
    n = c.sum()
    sum_comb = _comb2(c).sum()
    sum_a = _comb2(c.sum(axis=1)).sum()
    sum_b = _comb2(c.sum(axis=0)).sum()
    expected = sum_a * sum_b / _comb2(n) if n > 1 else 0.0
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:  # both labelings trivial (one cluster, or all singletons)
        return 1.0
    return float((sum_comb - expected) / (maximum - expected))


# --------------------------------------------------------------------------- public API


def _blocks_with_labels(X: Any, labels: Any, owner: str, sample_weight: Any = None):
    prep = prepare_input(X, sample_weight, owner=owner, labels=labels)
    bs = load_blocks(prep, owner=owner)
    handles = bs.map_keep(block_labels)
    k = int(max(bs.gather(bs.map_values(_max_label, handles)))) + 1
    mean = bs.moments()[1]
    return bs, handles, k, mean


def _max_label(labels: np.ndarray) -> int:
    if labels.size and labels.min() < 0:
        raise InputError("labels must be non-negative integers (cluster indices)")
    return int(labels.max()) if labels.size else -1


def silhouette_full_sq_score(X: Any, labels: Any, sample_weight: Any = None) -> float:
    """Squared-Euclidean silhouette over all rows in O(n k d), as Spark's
    ``ClusteringEvaluator`` defines it (not the Euclidean silhouette of scikit-learn)."""
    bs, handles, k, mean = _blocks_with_labels(X, labels, "silhouette_full_sq_score", sample_weight)
    try:
        return cluster_quality(bs, handles, k, mean).silhouette_full_sq
    finally:
        bs.release()


def calinski_harabasz_score(X: Any, labels: Any) -> float:
    """Calinski-Harabasz index (equals scikit-learn's), map-reduced over chunks."""
    bs, handles, k, mean = _blocks_with_labels(X, labels, "calinski_harabasz_score")
    try:
        return _require(cluster_quality(bs, handles, k, mean), "calinski_harabasz")
    finally:
        bs.release()


def davies_bouldin_score(X: Any, labels: Any) -> float:
    """Davies-Bouldin index (equals scikit-learn's), map-reduced over chunks."""
    bs, handles, k, mean = _blocks_with_labels(X, labels, "davies_bouldin_score")
    try:
        return _require(cluster_quality(bs, handles, k, mean), "davies_bouldin")
    finally:
        bs.release()


def _require(q: ClusterQuality, name: str) -> float:
    if q.n_clusters_present < 2 or q.n_clusters_present >= int(q.counts.sum()):
        raise InputError(
            f"{name} needs 2 <= number of clusters <= n_samples - 1; got "
            f"{q.n_clusters_present} cluster(s) for {int(q.counts.sum())} rows"
        )
    return float(getattr(q, name))


def silhouette_sample_score(
    X: Any,
    labels: Any,
    sample_size: int = 20_000,
    random_state: int = 0,
    return_sample: bool = False,
) -> float | tuple[float, np.ndarray]:
    """Exact Euclidean silhouette of a seeded sample stratified by cluster.

    Equals ``sklearn.metrics.silhouette_score`` on the same rows; with ``return_sample``
    the sample's global row indices are returned too.
    """
    bs, handles, k, _mean = _blocks_with_labels(X, labels, "silhouette_sample_score")
    try:
        counts = np.sum(bs.gather(bs.map_values(label_counts, handles, k=k)), axis=0)
        rows, lab, gidx = stratified_sample(bs, handles, counts, sample_size, random_state)
        score = sample_silhouette(rows, lab, k, bs.client)
    finally:
        bs.release()
    return (score, gidx) if return_sample else score
