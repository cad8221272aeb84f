"""Exact Euclidean silhouettes on seeded samples stratified by cluster, block by block.

The sample (a few thousand rows) comes to the caller; its pairwise distances are computed on
the cluster one block of rows at a time (never an n x n matrix).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..kernels import metrics as mk
from ..kernels.streams import Stream, row_uniforms
from .blocks import Block, BlockSet

__all__ = [
    "label_counts",
    "sample_silhouette",
    "shared_sample_silhouettes",
    "stratified_sample",
]


def label_counts(labels: np.ndarray, k: int) -> np.ndarray:
    """Rows per cluster of one block's labels (a per-block task)."""
    return np.bincount(labels, minlength=k)


def _sample_candidates(
    block: Block, labels: np.ndarray, offset: int, seed: int, thresholds: np.ndarray
) -> tuple:
    u = row_uniforms(seed, Stream.SILHOUETTE_SAMPLE, offset, block.X.shape[0])
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
            bs.map_keep(
                _sample_candidates,
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
    part: tuple[int, int], sample: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]
) -> np.ndarray:
    start, stop = part
    idx = np.arange(start, stop)
    # one BLAS thread, as on a worker: a threaded product may round differently, and the
    # same sample must give the same bits in the client's thread pool and on a cluster
    with threadpool_limits(limits=1, user_api="blas"):
        return mk.silhouette_rows(sample[start:stop], idx, sample, labels, np.asarray(ks))


def _blockwise_silhouettes(
    sample: np.ndarray, labels: np.ndarray, ks: tuple[int, ...], client: Any | None
) -> np.ndarray:
    """Mean exact silhouette of every labelling (columns of ``labels``) of an in-memory
    sample, one task per block of rows; on the cluster when a client is given."""
    S = np.asarray(sample, dtype=np.float64)
    S = S - S.mean(axis=0)  # centred: the expanded distances stay accurate
    n = S.shape[0]
    step = max(256, -(-n // 8))
    ranges = [(a, min(a + step, n)) for a in range(0, n, step)]
    if client is None:
        values = [_silhouette_task(r, S, labels, ks) for r in ranges]
    else:
        # the sample goes to every worker once; arrays never travel as task keyword values
        fS, fL = client.scatter([S, labels], broadcast=True, hash=False)
        m = len(ranges)
        futs = client.map(_silhouette_task, ranges, [fS] * m, [fL] * m, [ks] * m, pure=False)
        values = client.gather(futs)
        client.cancel([fS, fL])
    return np.concatenate(values).mean(axis=0)


def sample_silhouette(
    sample: np.ndarray, labels: np.ndarray, k: int, client: Any | None = None
) -> float:
    """Exact Euclidean silhouette (scikit-learn's definition) of an in-memory sample,
    computed block by block; on the cluster when a client is given."""
    n = sample.shape[0]
    present = np.unique(labels)
    if not 2 <= present.size <= n - 1:
        return float("nan")
    lab = np.asarray(labels, dtype=np.int64).reshape(-1, 1)
    return float(_blockwise_silhouettes(sample, lab, (int(k),), client)[0])


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
        codes = bs.map_values(_joint_codes, *labelings, radices=radices)
    parts = bs.gather(bs.map_values(_unique_counts, codes))
    uniq = np.unique(np.concatenate([p[0] for p in parts]))
    counts = np.zeros(uniq.size, dtype=np.int64)
    for u, c in parts:
        counts[np.searchsorted(uniq, u)] += c
    strata = bs.map_values(_to_strata, codes, uniq=uniq)
    rows, _, gidx = stratified_sample(bs, strata, counts, size, seed)
    # every labelling's labels at the sampled rows (only the blocks that hold them)
    block_of = np.searchsorted(np.asarray(bs.offsets), gidx, side="right") - 1
    blocks = sorted(set(block_of.tolist()))
    per_block = bs.gather(
        bs.map_values(
            _labels_at,
            [gidx[block_of == b] for b in blocks],
            [bs.offsets[b] for b in blocks],
            *[[lab[b] for b in blocks] for lab in labelings],
        )
    )
    sample_labels = np.empty((gidx.size, len(ks)), dtype=np.int64)
    for b, lab in zip(blocks, per_block, strict=True):
        sample_labels[block_of == b] = lab
    n = rows.shape[0]
    sil = _blockwise_silhouettes(rows, sample_labels, radices, bs.client)
    for j, k in enumerate(radices):
        if not 2 <= np.unique(sample_labels[:, j]).size <= n - 1 or k < 2:
            sil[j] = np.nan
    bs.release(codes if codes is not labelings[int(np.argmax(radices))] else [])
    bs.release(strata)
    return sil, gidx, sample_labels
