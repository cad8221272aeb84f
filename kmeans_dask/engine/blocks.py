"""Row blocks persisted once, and map-reduce over them (the Dask plumbing).

A :class:`BlockSet` holds a dataset as a list of row blocks that live where the work runs:
futures on the workers of a ``distributed`` cluster, or plain arrays in this process when
no cluster is set up (then a thread pool runs the compiled kernels, which release the GIL).
Iterative algorithms call :meth:`BlockSet.map` with small broadcast arguments (centres);
each call is one task per block and returns small partials to the caller, so an iteration
neither rebuilds a large graph nor moves data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import dask
import numpy as np

from ..progress import ProgressTask
from .block import (
    Block,
    BlockSummary,
    OnRecipe,
    attach_labels,
    concat_blocks,
    load,
    make_block,
    merge_summaries,
    scale_in_place,
    scaled_summary,
    summarize,
)
from .executor import Executor, get_client
from .placement import rebalance
from .plan import group_consecutive, min_blocks, target_block_bytes
from .pool import PoolCache, PoolRequest, SamplePool, draw_rows, join_rows, summarize_and_draw

__all__ = ["Block", "BlockSet", "BlockSummary", "get_client", "make_block"]


def _triples(parts: list, weight_parts: list | None, label_parts: list | None) -> list:
    wparts = weight_parts if weight_parts is not None else [None] * len(parts)
    lparts = label_parts if label_parts is not None else [None] * len(parts)
    return list(zip(parts, wparts, lparts, strict=True))


class BlockSet:
    """A dataset held as row blocks on the workers (or locally), with block metadata.

    Build one with :meth:`from_arrays` or :meth:`from_delayed`; then :meth:`map` runs a
    kernel per block and :meth:`map_keep` keeps per-block results (labels, per-row state)
    where they are.
    """

    def __init__(
        self,
        handles: list,
        summaries: list[BlockSummary],
        executor: Executor,
        dtype: np.dtype,
        n_features: int,
        weighted: bool,
        *,
        streamed: bool = False,
        labels: list | None = None,
        feature_names: list[str] | None = None,
    ) -> None:
        self.handles = handles
        #: streamed: ``handles`` are recipes, loaded again by every task that needs a block
        self.streamed = streamed
        #: per-block labels attached to streamed blocks (persisted blocks carry their own)
        self.labels = labels
        self.feature_names = feature_names
        self.summaries = summaries
        self.sizes = [s.n for s in summaries]
        self.offsets = [0, *np.cumsum(self.sizes).tolist()][:-1]
        self.n_samples = int(sum(self.sizes))
        self.n_features = n_features
        self.dtype = np.dtype(dtype)
        self.weighted = weighted
        self._exec = executor
        #: sample draws made from these blocks (see :meth:`sample_rows`)
        self.pools = PoolCache()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        parts: list,
        weight_parts: list | None,
        dtype: np.dtype,
        n_features: int,
        *,
        sizes: Sequence[int] | None = None,
        client: Any | None = None,
        label_parts: list | None = None,
    ) -> BlockSet:
        """Blocks from in-memory numpy parts (in row order), scattered to the workers.

        ``weight_parts``/``label_parts`` are aligned part by part (None when absent).
        """
        ex = Executor(client if client is not None else get_client())
        triples = _triples(parts, weight_parts, label_parts)
        blocks = [make_block(p, w, dtype, lab) for p, w, lab in triples]
        # scatter ready-made blocks: the data goes straight to the workers
        handles = ex.scatter(blocks) if ex.client is not None else blocks
        return cls._finish(handles, ex, dtype, n_features, weight_parts is not None, sizes)

    @classmethod
    def from_delayed(
        cls,
        parts: list,
        weight_parts: list | None,
        dtype: np.dtype,
        n_features: int,
        *,
        sizes: Sequence[int] | None = None,
        client: Any | None = None,
        label_parts: list | None = None,
    ) -> BlockSet:
        """Blocks computed on the workers from dask ``Delayed`` parts (arrays or pandas
        frames, in row order). ``sizes`` are the parts' row counts when known (then the
        parts are kept as planned; otherwise runs of small parts are merged)."""
        ex = Executor(client if client is not None else get_client())
        mk = dask.delayed(make_block, pure=False)  # unique keys per fit
        triples = _triples(parts, weight_parts, label_parts)
        handles = ex.compute([mk(p, w, dtype, lab) for p, w, lab in triples])
        return cls._finish(handles, ex, dtype, n_features, weight_parts is not None, sizes)

    @classmethod
    def from_recipes(
        cls,
        recipes: Sequence,
        n_features: int,
        dtype: np.dtype,
        *,
        persist: bool,
        client: Any | None = None,
        feature_names: list[str] | None = None,
        pool: PoolRequest | None = None,
    ) -> BlockSet:
        """Blocks described by recipes (:class:`~kmeans_dask.engine.source.Recipe`: any
        object with ``load() -> Block`` and ``n_rows``).

        ``persist=True`` loads every block once and keeps it on the workers; ``False``
        streams: every pass loads each block again and drops it, so nothing but per-block
        results stays in memory. Both give the same blocks, hence the same results.

        ``pool``: a sample a later fit will ask for (mini-batch's pool), drawn in the
        streamed summary pass when every recipe knows its rows (one read instead of two);
        ignored when persisting (a draw from persisted blocks reads nothing).
        """
        ex = Executor(client if client is not None else get_client())
        recipes = list(recipes)
        if persist:
            # each block loaded where it will stay (the blocks are planned about equal, so
            # rows are the weights; 1 where unknown): no worker holds more than its share
            weights = [float(getattr(r, "n_rows", None) or 1) for r in recipes]
            handles = ex.map_spread(load, recipes, weights)
            bs = cls._finish(handles, ex, dtype, n_features, False, [0] * len(recipes))
        else:
            bs = cls(recipes, [], ex, dtype, n_features, False, streamed=True)
            bs._summarise(pool)
        bs.feature_names = feature_names
        return bs

    def _summarise(self, pool: PoolRequest | None = None) -> None:
        """(Re)compute the block summaries (one pass), drawing the ``pool`` sample in the
        same pass when the recipes know their rows (the draw needs each block's offset)."""
        planned = [getattr(r, "n_rows", None) for r in self.handles] if self.streamed else []
        draw = pool is not None and planned and all(n is not None for n in planned)
        if draw:
            offsets = [0, *np.cumsum(planned).tolist()][:-1]
            out = self.map(summarize_and_draw, offsets, seed=pool.seed, rate=pool.rate)
            self.summaries = [o[0] for o in out]
        else:
            self.summaries = self.map(summarize)
        self.sizes = [s.n for s in self.summaries]
        self.offsets = [0, *np.cumsum(self.sizes).tolist()][:-1]
        self.n_samples = int(sum(self.sizes))
        # (the readers check each unit's rows against the plan; a mismatch drops the draw)
        if draw and self.sizes == planned:
            self.pools.put(pool.seed, pool.rate, join_rows([o[1:] for o in out], pool.rate, 0))

    def sample_rows(self, seed: int, rate: float) -> SamplePool:
        """Every row kept with probability ``rate`` by the uniforms of ``seed`` (see
        :mod:`~kmeans_dask.engine.pool`), in global row order, with their weights.

        A draw is kept on this object (and its views), so asking again costs no pass: the
        pool's ``n_passes`` is 1 when this call read the blocks, else 0.
        """
        return self.pools.get(seed, rate, lambda: self._draw(seed, rate))

    def _draw(self, seed: int, rate: float) -> SamplePool:
        parts = self.map(draw_rows, self.offsets, seed=seed, rate=rate)
        return join_rows(parts, rate, 1)

    def scaled(self, transform: Any) -> BlockSet:
        """The blocks standardised by ``transform`` (an ``Affine``: ``apply(X)`` in place).

        Persisted blocks are scaled in place on the workers (no second copy); streamed blocks
        get the transform in their recipes. The summaries follow from the unscaled ones (the
        moments of an affine map; no pass over the data), the same way in both modes.
        """
        view = copy.copy(self)
        view.pools = self.pools.scaled(transform)
        if self.streamed:
            view.handles = [r.scaled(transform) for r in self.handles]
        else:
            view.handles = self._exec.map(scale_in_place, self.handles, transform=transform)
            self._exec.release(self.handles)  # the same arrays now live under the new keys
        view.summaries = [
            scaled_summary(s, transform.mean, transform.scale) for s in self.summaries
        ]
        return view

    def with_labels(self, labels: list) -> BlockSet:
        """The same blocks with per-block ``labels`` (handles from :meth:`map_keep`) attached
        as :attr:`Block.labels` (shares the features; nothing is copied)."""
        view = copy.copy(self)
        if self.streamed:
            view.labels = list(labels)
        else:
            view.handles = self._exec.map(attach_labels, self.handles, labels)
        return view

    @classmethod
    def _finish(
        cls,
        handles: list,
        ex: Executor,
        dtype: np.dtype,
        n_features: int,
        weighted: bool,
        sizes: Sequence[int] | None,
    ) -> BlockSet:
        """The preparation pass (block summaries), merging and balancing."""
        summaries = ex.gather(ex.map(summarize, handles))
        bs = cls(handles, summaries, ex, dtype, n_features, weighted)
        target = target_block_bytes()
        if target is not None and sizes is None and len(handles) > 1:
            bs = bs._merge_small(target)
        bs._balance()
        return bs

    def _balance(self) -> None:
        """Spread the blocks over the workers in proportion to their threads
        (:func:`~.placement.rebalance`)."""
        if self.client is not None and self.n_blocks > 1 and not self.streamed:
            old = rebalance(self.client, self.handles, self.sizes)
            self._exec.release(old)

    def _merge_small(self, target: int) -> BlockSet:
        """Join runs of small consecutive blocks (for inputs whose sizes were unknown)."""
        row_bytes = self.n_features * self.dtype.itemsize
        groups = group_consecutive(self.sizes, row_bytes, target)
        if len(groups) == len(self.handles):
            return self
        groups = self._at_least(groups, min_blocks())  # from the data, not the cluster
        merged: list = []
        summaries: list[BlockSummary] = []
        for g in groups:
            if len(g) == 1:
                merged.append(self.handles[g[0]])
                summaries.append(self.summaries[g[0]])
                continue
            merged.append(self._exec.map(concat_blocks, *[[self.handles[i]] for i in g])[0])
            summaries.append(merge_summaries([self.summaries[i] for i in g]))
        old = [h for g in groups if len(g) > 1 for h in (self.handles[i] for i in g)]
        out = BlockSet(merged, summaries, self._exec, self.dtype, self.n_features, self.weighted)
        self._exec.release(old)
        return out

    def _at_least(self, groups: list[list[int]], n: int) -> list[list[int]]:
        # split the largest groups until there are as many groups as threads (when possible)
        groups = [list(g) for g in groups]
        while len(groups) < n:
            big = max(range(len(groups)), key=lambda i: len(groups[i]))
            if len(groups[big]) < 2:
                break
            g = groups.pop(big)
            half = len(g) // 2
            groups[big:big] = [g[:half], g[half:]]
        return groups

    def tagged(self, tag: str) -> BlockSet:
        """The same blocks, with task keys prefixed by ``tag`` (to tell concurrent jobs apart)."""
        view = copy.copy(self)
        view._exec = Executor(self._exec.client, tag)
        return view

    # ------------------------------------------------------------------ execution
    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self.handles)

    @property
    def client(self) -> Any | None:
        """The distributed client the blocks live on (None when local)."""
        return self._exec.client

    def map(self, func: Callable, *per_block: Sequence, **broadcast: Any) -> list:
        """``func(block, *per_block_values, **broadcast)`` on every block, results gathered.

        Results must be small (partials): they travel to the caller.
        """
        return self._exec.gather(self.map_keep(func, *per_block, **broadcast))

    def map_keep(self, func: Callable, *per_block: Sequence, **broadcast: Any) -> list:
        """Like :meth:`map` but leave the results where they were computed (handles)."""
        if self.streamed:
            labels = self.labels if self.labels is not None else [None] * self.n_blocks
            return self._exec.map(OnRecipe(func), self.handles, labels, *per_block, **broadcast)
        return self._exec.map(func, self.handles, *per_block, **broadcast)

    def map_on(
        self, indices: Sequence[int], func: Callable, *per_block: Sequence, **broadcast: Any
    ) -> list:
        """:meth:`map` on the blocks at ``indices`` only (``per_block`` aligned with them)."""
        view = copy.copy(self)
        view.handles = [self.handles[i] for i in indices]
        if self.labels is not None:
            view.labels = [self.labels[i] for i in indices]
        return view.map(func, *per_block, **broadcast)

    def map_values(self, func: Callable, *per_block: Sequence, **broadcast: Any) -> list:
        """``func(*per_block_values, **broadcast)``, one task per block, on per-block values
        given explicitly (results of :meth:`map_keep`, ``handles``, offsets); the results stay
        where they were computed. Unlike :meth:`map`, the blocks are not passed implicitly."""
        return self._exec.map(func, *per_block, **broadcast)

    def gather(self, handles: list, progress: ProgressTask | None = None) -> list:
        """Bring small per-block results to the caller (``progress``: advanced per block)."""
        return self._exec.gather(handles, progress)

    def release(self, handles: list | None = None) -> None:
        """Free per-block results (or, with no argument, the blocks themselves and the
        sample draws kept of them)."""
        if handles is None:
            self.pools.clear()
        if handles is None and self.streamed:
            return  # recipes hold no data
        self._exec.release(self.handles if handles is None else handles)

    def take_rows(self, global_index: np.ndarray) -> np.ndarray:
        """Rows at the given global positions, in the given order (touches only their blocks)."""
        global_index = np.asarray(global_index, dtype=np.int64)
        block_of = np.searchsorted(np.asarray(self.offsets), global_index, side="right") - 1
        wanted = sorted(set(block_of.tolist()))
        local = [global_index[block_of == b] - self.offsets[b] for b in wanted]
        parts = self.map_on(wanted, _take, local)
        out = np.empty((global_index.size, self.n_features), dtype=self.dtype)
        for b, rows in zip(wanted, parts, strict=True):
            out[block_of == b] = rows
        return out

    # ------------------------------------------------------------------ merged statistics
    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Global (count, mean, M2) over all blocks (Chan's merge of the block moments)."""
        s = self.total_summary()
        return s.n, s.mean, s.m2

    def total_summary(self) -> BlockSummary:
        """The block summaries merged: global moments, non-finite counts, weight checks."""
        return merge_summaries(self.summaries)

    def per_block_array(self, handles: list, dtype: np.dtype, row_chunks: Sequence | None = None):
        """A lazy 1-D dask array from per-block arrays (e.g. labels) kept on the workers."""
        import dask.array as da

        if self.client is not None:
            arrs = [
                da.from_delayed(h, shape=(n,), dtype=dtype)
                for h, n in zip(handles, self.sizes, strict=True)
            ]
            out = da.concatenate(arrs) if len(arrs) > 1 else arrs[0]
        else:
            out = da.from_array(np.concatenate(handles), chunks=(tuple(self.sizes),))
        if row_chunks is not None and tuple(row_chunks) != out.chunks[0]:
            out = out.rechunk((tuple(row_chunks),))
        return out


def _take(block: Block, idx: np.ndarray) -> np.ndarray:
    return block.X[idx]
