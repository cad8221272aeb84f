"""Clustering metrics as map-reduce over chunks (no row is gathered to the caller)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from . import init_kernels
from . import metric_kernels as mk
from .blocks import Block, BlockSet
from .exceptions import InputError
from .validation import load_blocks, prepare_input

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
        raise ValueError(f"labels have different shapes: {a.shape} and {b.shape}.")
    b = b.rechunk(a.chunks)
    # one graph style for both passes (unoptimised), so keys never clash between submissions
    pa = a.to_delayed(optimize_graph=False).ravel()
    pb = b.to_delayed(optimize_graph=False).ravel()
    ranges = dask.compute(*[dask.delayed(_range)(x, y) for x, y in zip(pa, pb, strict=True)])
    lo = min(r[0] for r in ranges)
    if lo < 0:
        raise ValueError("labels must be non-negative integers.")
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


# --------------------------------------------------------------------------- cluster quality
# Internal forms take a BlockSet and per-block label handles (as a fit leaves them on the
# workers); the public functions below build those from X and labels.


def _stats_task(block: Block, labels: np.ndarray, k: int, ref: np.ndarray) -> tuple:
    return mk.cluster_stats(block.X, labels, k, ref, block.w)


def _quality_task(
    block: Block,
    labels: np.ndarray,
    ref: np.ndarray,
    weight: np.ndarray,
    sums: np.ndarray,
    sq: np.ndarray,
    means: np.ndarray,
) -> tuple[float, float, np.ndarray]:
    return mk.cluster_quality_partials(block.X, labels, ref, weight, sums, sq, means, block.w)


def _block_labels(block: Block) -> np.ndarray:
    return block.labels


@dataclass(frozen=True)
class ClusterQuality:
    """Cluster-quality metrics of one labelling (NaN where undefined, e.g. one cluster)."""

    silhouette_full_sq: float
    calinski_harabasz: float
    davies_bouldin: float
    n_clusters_present: int
    counts: np.ndarray


def cluster_quality(bs: BlockSet, labels: list, k: int, reference: np.ndarray) -> ClusterQuality:
    """Spark's squared-Euclidean silhouette over all rows, Calinski-Harabasz and
    Davies-Bouldin, in two compiled passes over the blocks (inputs already validated).

    Calinski-Harabasz and Davies-Bouldin use the cluster means of the labelling (as
    scikit-learn does) and ignore weights; the silhouette honours sample weights.
    """
    parts = bs.gather(bs.map_handles(_stats_task, bs.handles, labels, k=k, ref=reference))
    weight, sums, sq, counts, plain = (np.sum([p[i] for p in parts], axis=0) for i in range(5))
    counts = counts.astype(np.int64)
    present = counts > 0
    # unweighted means for CH/DB (scikit-learn ignores weights there), relative to reference
    means = np.zeros_like(plain)
    means[present] = plain[present] / counts[present, None]
    q = bs.gather(
        bs.map_handles(
            _quality_task,
            bs.handles,
            labels,
            ref=reference,
            weight=weight,
            sums=sums,
            sq=sq,
            means=means,
        )
    )
    total_w = weight.sum()
    n_present = int(present.sum())
    n = int(counts.sum())
    sil = float(sum(p[0] for p in q) / total_w) if n_present >= 2 else float("nan")
    within = float(sum(p[1] for p in q))
    dist_sum = np.sum([p[2] for p in q], axis=0)
    if 2 <= n_present <= n - 1:
        grand = means[present].T @ counts[present] / n
        between = float((counts[present] * ((means[present] - grand) ** 2).sum(axis=1)).sum())
        ch = 1.0 if within == 0 else between * (n - n_present) / (within * (n_present - 1))
        intra = dist_sum[present] / counts[present]
        cm = means[present]
        cd = np.sqrt(((cm[:, None, :] - cm[None, :, :]) ** 2).sum(-1))
        if np.allclose(intra, 0) or np.allclose(cd, 0):
            db = 0.0
        else:
            cd[cd == 0] = np.inf
            db = float(np.mean(np.max((intra[:, None] + intra[None, :]) / cd, axis=1)))
    else:
        ch = db = float("nan")
    return ClusterQuality(sil, float(ch), db, n_present, counts)


def _bincount_task(labels: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(labels, minlength=k)


def _sample_candidates(
    block: Block, labels: np.ndarray, offset: int, seed: int, thresholds: np.ndarray
) -> tuple:
    u = init_kernels.row_uniforms(seed, 7, offset, block.X.shape[0])
    uu, gidx, local = mk.stratified_candidates(u, labels, thresholds, offset)
    return uu, gidx, labels[local], block.X[local].copy()


def stratified_sample(
    bs: BlockSet, labels: list, counts: np.ndarray, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded sample stratified by cluster: ``(rows, labels, global indices)``.

    Every cluster gets ``size * n_c / n`` rows (at least 2, or all its rows), drawn by the
    smallest counter-based uniforms of its rows, so small clusters are never missed and the
    sample does not depend on the chunking.
    """
    n = int(counts.sum())
    want = np.where(
        counts > 0, np.minimum(counts, np.maximum(2, np.round(size * counts / n))), 0
    ).astype(np.int64)
    if want.sum() >= n:
        thresholds = np.full(len(counts), 2.0)
    else:
        # a little above the expected quantile, so one pass almost always suffices
        slack = want + 6 * np.sqrt(want) + 10
        thresholds = np.where(counts > 0, np.minimum(slack / np.maximum(counts, 1), 2.0), 0.0)
    for _attempt in range(2):
        parts = bs.gather(
            bs.map_handles(
                _sample_candidates,
                bs.handles,
                labels,
                bs.offsets,
                seed=seed,
                thresholds=thresholds,
            )
        )
        u = np.concatenate([p[0] for p in parts])
        gidx = np.concatenate([p[1] for p in parts])
        lab = np.concatenate([p[2] for p in parts])
        rows = np.concatenate([p[3] for p in parts])
        got = np.bincount(lab, minlength=len(counts))
        if np.all(got >= want):
            break
        thresholds = np.full(len(counts), 2.0)  # rare: take every candidate
    keep = []
    for c in np.flatnonzero(want):
        idx = np.flatnonzero(lab == c)
        keep.append(idx[np.lexsort((gidx[idx], u[idx]))[: want[c]]])
    sel = np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
    order = np.argsort(gidx[sel], kind="stable")
    sel = sel[order]
    return rows[sel], lab[sel], gidx[sel]


def _silhouette_task(
    part: tuple[int, int], sample: np.ndarray, labels: np.ndarray, k: int
) -> np.ndarray:
    start, stop = part
    idx = np.arange(start, stop)
    return mk.silhouette_rows(sample[start:stop], labels[start:stop], idx, sample, labels, k)


def sample_silhouette(
    sample: np.ndarray, labels: np.ndarray, k: int, client: Any | None = None
) -> float:
    """Exact Euclidean silhouette (scikit-learn's definition) of an in-memory sample,
    computed block by block; on the cluster when a client is given."""
    n = sample.shape[0]
    present = np.unique(labels)
    if not 2 <= present.size <= n - 1:
        return float("nan")
    S = np.asarray(sample, dtype=np.float64)
    S = S - S.mean(axis=0)  # centred: the expanded distances stay accurate
    step = max(256, -(-n // 8))
    parts = [(a, min(a + step, n)) for a in range(0, n, step)]
    if client is not None:
        # the sample goes to every worker once; arrays never travel as task keyword values
        fS, fL = client.scatter([S, np.asarray(labels)], broadcast=True, hash=False)
        n_parts = len(parts)
        futs = client.map(
            _silhouette_task, parts, [fS] * n_parts, [fL] * n_parts, [k] * n_parts, pure=False
        )
        values = client.gather(futs)
        client.cancel([fS, fL])
    else:
        values = [_silhouette_task(p, S, labels, k) for p in parts]
    return float(np.mean(np.concatenate(values)))


def _joint_codes(*labelings: np.ndarray, radices: tuple[int, ...]) -> np.ndarray:
    code = np.zeros(labelings[0].shape[0], dtype=np.int64)
    for lab, k in zip(labelings, radices, strict=True):
        code = code * k + lab
    return code


def _unique_counts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(codes, return_counts=True)


def _to_strata(codes: np.ndarray, uniq: np.ndarray) -> np.ndarray:
    return np.searchsorted(uniq, codes)


def _labels_at(gidx: np.ndarray, offset: int, *labelings: np.ndarray) -> np.ndarray:
    local = gidx - offset
    return np.stack([lab[local] for lab in labelings], axis=1)


def _multi_task(part: tuple[int, int], sample: np.ndarray, labels: np.ndarray, ks) -> np.ndarray:
    start, stop = part
    idx = np.arange(start, stop)
    return mk.silhouette_rows_multi(sample[start:stop], idx, sample, labels, np.asarray(ks))


def shared_sample_silhouettes(
    bs: BlockSet,
    labelings: list[list],
    ks: list[int],
    size: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact silhouettes of several labellings (a K sweep) on one shared sample.

    The sample is stratified by the joint labels (every combination of cluster indices is a
    stratum), so every cluster of every labelling, being a union of strata, gets its share
    and at least two rows. Each block of sample distances is then computed once for all
    labellings. Returns ``(silhouette per labelling, sample global indices, sample labels
    (n_sample, n_labellings))``.
    """
    radices = tuple(int(k) for k in ks)
    if float(np.prod([float(k) for k in radices])) >= 2.0**62:
        # too many combinations to encode: stratify by the finest labelling only
        codes = labelings[int(np.argmax(radices))]
    else:
        codes = bs.map_handles(_joint_codes, *labelings, radices=radices)
    parts = bs.gather(bs.map_handles(_unique_counts, codes))
    uniq = np.unique(np.concatenate([p[0] for p in parts]))
    counts = np.zeros(uniq.size, dtype=np.int64)
    for u, c in parts:
        counts[np.searchsorted(uniq, u)] += c
    strata = bs.map_handles(_to_strata, codes, uniq=uniq)
    rows, _, gidx = stratified_sample(bs, strata, counts, size, seed)
    # every labelling's labels at the sampled rows (only the blocks that hold them)
    block_of = np.searchsorted(np.asarray(bs.offsets), gidx, side="right") - 1
    blocks = sorted(set(block_of.tolist()))
    per_block = bs.gather(
        bs.map_handles(
            _labels_at,
            [gidx[block_of == b] for b in blocks],
            [bs.offsets[b] for b in blocks],
            *[[lab[b] for b in blocks] for lab in labelings],
        )
    )
    sample_labels = np.empty((gidx.size, len(ks)), dtype=np.int64)
    for b, lab in zip(blocks, per_block, strict=True):
        sample_labels[block_of == b] = lab
    S = np.asarray(rows, dtype=np.float64)
    S = S - S.mean(axis=0)
    n = S.shape[0]
    step = max(256, -(-n // 8))
    ranges = [(a, min(a + step, n)) for a in range(0, n, step)]
    client = bs.client
    if client is not None:
        fS, fL = client.scatter([S, sample_labels], broadcast=True, hash=False)
        m = len(ranges)
        futs = client.map(_multi_task, ranges, [fS] * m, [fL] * m, [radices] * m, pure=False)
        values = client.gather(futs)
        client.cancel([fS, fL])
    else:
        values = [_multi_task(r, S, sample_labels, radices) for r in ranges]
    sil = np.concatenate(values).mean(axis=0)
    for j, k in enumerate(radices):
        if not 2 <= np.unique(sample_labels[:, j]).size <= n - 1 or k < 2:
            sil[j] = np.nan
    bs.release(codes if codes is not labelings[int(np.argmax(radices))] else [])
    bs.release(strata)
    return sil, gidx, sample_labels


# --------------------------------------------------------------------------- public API


def _blocks_with_labels(X: Any, labels: Any, owner: str, sample_weight: Any = None):
    prep = prepare_input(X, sample_weight, owner=owner, labels=labels)
    bs = load_blocks(prep, owner=owner)
    handles = bs.map_keep(_block_labels)
    k = int(max(bs.gather(bs.map_handles(_max_label, handles)))) + 1
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
        counts = np.sum(bs.gather(bs.map_handles(_bincount_task, handles, k=k)), axis=0)
        rows, lab, gidx = stratified_sample(bs, handles, counts, sample_size, random_state)
        score = sample_silhouette(rows, lab, k, bs.client)
    finally:
        bs.release()
    return (score, gidx) if return_sample else score
