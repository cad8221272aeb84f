"""The reference side of the chunked KNN search: persisted (or streamed) reference blocks,
their mean, and the landmark indexes of the pruned search, built when a search can pay for
them (:meth:`Reference.plan`). The search graphs themselves are in :mod:`.knn_graph`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np

from ..kernels import knn_index as ki
from ..kernels import knn_pruned as kp
from .blocks import Block, BlockSet

__all__ = ["AUTO_QUERIES_PER_CLUSTER", "Reference"]

#: ``algorithm='auto'`` builds the landmark indexes only for a search of at least this many
#: queries per landmark cluster of the largest reference block: building one costs about two
#: plain distances per (reference row, cluster) pair, so with fewer queries the index alone
#: would cost over 5% of the brute-force search it is meant to shorten (measured here: 4M
#: reference rows, 10,000 queries, overlapping blobs: the eager index and its probes made the
#: search 1.15x the plain one).
AUTO_QUERIES_PER_CLUSTER = 40


@dataclass(frozen=True)
class Reference:
    """A persisted reference set as the graphs use it.

    ``nodes`` stand for the blocks in a graph: the futures on a cluster, else named Delayed
    nodes holding the in-memory blocks (so a graph names every block once). ``mu`` is the
    reference mean both sides are shifted by; ``fill`` is the value of padding labels.
    ``algorithm`` 'pruned' or 'auto' searches with one
    :class:`~kmeans_dask.kernels.knn_index.ClusterIndex` per block (None for a block too
    small to prune), built by :meth:`plan` at the first search that uses it (by a task on the
    block's worker) and kept for later searches; 'brute' searches every pair with the plain
    kernel.
    """

    blocks: BlockSet
    nodes: list
    mu: np.ndarray
    fill: Any
    labels: list | None = None  # per-block labels of streamed blocks (else in the blocks)
    algorithm: str = "brute"
    _built: dict = field(default_factory=dict, repr=False)  # the index once built

    @classmethod
    def from_blocks(cls, bs: BlockSet, fill: Any, algorithm: str = "brute") -> Reference:
        mu = bs.moments()[1]
        if bs.streamed:
            # streamed: each pair task reads its reference block (the recipe) itself; no
            # index (it would hold half a copy of data that was too large to persist)
            token = uuid.uuid4().hex[:12]
            nodes = [
                dask.delayed(r, name=f"knn-recipe-{token}-{j}", traverse=False)
                for j, r in enumerate(bs.handles)
            ]
            labels = bs.labels if bs.labels is not None else [None] * bs.n_blocks
            return cls(bs, nodes, mu, fill, list(labels))
        if bs.client is not None:
            nodes = list(bs.handles)
        else:
            token = uuid.uuid4().hex[:12]
            nodes = [
                dask.delayed(h, name=f"knn-ref-{token}-{j}", traverse=False)
                for j, h in enumerate(bs.handles)
            ]
        return cls(bs, nodes, mu, fill, algorithm=algorithm)

    @property
    def index(self) -> list | None:
        """The per-block index nodes, once a search has built them (else None)."""
        return self._built.get("index")

    def plan(self, n_queries: int, k: int) -> tuple[str, list | None]:
        """``(mode, index)`` of a search of ``n_queries`` rows for ``k`` neighbours: 'brute'
        without an index; 'pruned' or 'auto' (probe, then prune or not per pair) with the
        per-block indexes, built now if they were not yet and the search is large enough to
        pay for them. 'auto' keeps a block's index only when the block's own rows, searched
        as queries, can prune (:func:`~kmeans_dask.kernels.knn_pruned.prunable`, with this
        first search's ``k``); a block without one is searched by brute force."""
        bs = self.blocks
        clusters = [n // ki.CLUSTER_ROWS for n in bs.sizes]
        big = [j for j, c in enumerate(clusters) if c >= ki.MIN_CLUSTERS]
        if self.algorithm == "brute" or bs.streamed or not big:
            return "brute", None
        if self.index is None:
            if self.algorithm == "auto" and n_queries < AUTO_QUERIES_PER_CLUSTER * max(clusters):
                return "brute", None
            self._built["index"] = self._build(big, k)
        return ("pruned" if self.algorithm == "pruned" else "auto"), self.index

    def _build(self, big: list[int], k: int) -> list:
        bs = self.blocks
        built = bs.map_values(
            _build_index,
            [bs.handles[j] for j in big],
            mu=self.mu,
            k=k,
            keep="always" if self.algorithm == "pruned" else "prunable",
        )
        index: list = [None] * bs.n_blocks
        for j, h in zip(big, built, strict=True):
            index[j] = h
        if bs.client is None:
            token = uuid.uuid4().hex[:12]
            index = [
                None
                if h is None
                else dask.delayed(h, name=f"knn-index-{token}-{j}", traverse=False)
                for j, h in enumerate(index)
            ]
        return index


def _build_index(block: Block, mu: np.ndarray, k: int, keep: str) -> ki.ClusterIndex | None:
    index = ki.build_index(block.X, mu)
    if index is None or keep == "always" or kp.prunable(block.X, index, k, mu):
        return index
    return None  # pruning cannot pay on this block: brute force, no probes, no memory


# --------------------------------------------------------------------------- search
