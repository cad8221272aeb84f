"""Cluster quality as map-reduce over row blocks: Spark's squared-Euclidean silhouette over
all rows, Calinski-Harabasz and Davies-Bouldin, in two compiled passes (no row gathered)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import metrics as mk
from .blocks import Block, BlockSet

__all__ = ["ClusterQuality", "block_labels", "cluster_quality"]




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


def block_labels(block: Block) -> np.ndarray:
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
    parts = bs.map(_stats_task, labels, k=k, ref=reference)
    weight, sums, sq, counts, plain = (np.sum([p[i] for p in parts], axis=0) for i in range(5))
    counts = counts.astype(np.int64)
    present = counts > 0
    # unweighted means for CH/DB (scikit-learn ignores weights there), relative to reference
    means = np.zeros_like(plain)
    means[present] = plain[present] / counts[present, None]
    q = bs.gather(
        bs.map_keep(
            _quality_task,
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
