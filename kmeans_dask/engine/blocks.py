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
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from ..kernels import moments as kernels
from .executor import Executor, get_client
from .plan import group_consecutive, min_blocks, target_block_bytes

__all__ = ["Block", "BlockSet", "BlockSummary", "get_client"]

@dataclass(frozen=True)
class Block:
    """One persisted row block: the features (C-contiguous), optional sample weights and
    optional labels (int64 cluster labels for metrics of a given labelling, or float64
    targets for KNN regression)."""

    X: np.ndarray
    w: np.ndarray | None
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class BlockSummary:
    """What the preparation pass learns about a block (small, gathered to the caller)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    n_nan: np.ndarray
    n_inf: np.ndarray
    weight_sum: float
    n_bad_weight: int
    max_abs: np.ndarray  # largest finite |value| per column (the overflow check)


def make_block(X: Any, w: Any, dtype: np.dtype, labels: Any = None) -> Block:
    """Materialise one block as a C-contiguous array of ``dtype`` (runs on a worker).

    Labels become int64, except float labels (a numeric target), which stay float64.
    """
    if hasattr(X, "to_numpy"):
        X = X.to_numpy(dtype=dtype)
    X = np.ascontiguousarray(X, dtype=dtype)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    wv = None if w is None else np.ascontiguousarray(np.asarray(w, dtype=np.float64).ravel())
    lv = None
    if labels is not None:
        lv = np.asarray(labels).ravel()
        lv = lv.astype(np.float64 if lv.dtype.kind == "f" else np.int64, copy=False)
    return Block(X, wv, lv)


def concat_blocks(*blocks: Block) -> Block:
    """Join consecutive small blocks into one (runs on a worker)."""
    X = np.concatenate([b.X for b in blocks])
    w = None if blocks[0].w is None else np.concatenate([b.w for b in blocks])
    lab = None if blocks[0].labels is None else np.concatenate([b.labels for b in blocks])
    return Block(X, w, lab)


def summarize(block: Block) -> BlockSummary:
    """Moments, non-finite counts, largest absolute values and weight checks of a block."""
    n, mean, m2, n_nan, n_inf, max_abs = kernels.moments(block.X)
    if block.w is None:
        return BlockSummary(n, mean, m2, n_nan, n_inf, float(n), 0, max_abs)
    w = block.w
    bad = int((~np.isfinite(w) | (w < 0)).sum())
    wsum = float(w[np.isfinite(w)].sum())
    return BlockSummary(n, mean, m2, n_nan, n_inf, wsum, bad, max_abs)


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
    ) -> None:
        self.handles = handles
        self.summaries = summaries
        self.sizes = [s.n for s in summaries]
        self.offsets = [0, *np.cumsum(self.sizes).tolist()][:-1]
        self.n_samples = int(sum(self.sizes))
        self.n_features = n_features
        self.dtype = np.dtype(dtype)
        self.weighted = weighted
        self._exec = executor

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
        """Spread the blocks over the workers in proportion to their threads.

        Every iteration runs each block where it lives, so an uneven placement (which
        rechunking or merging near the input data easily produces) makes one worker do most
        of each iteration. Blocks are kept where they are while their worker is under its
        share, and the rest are copied (once) to the least-loaded workers.
        """
        client = self.client
        if client is None or self.n_blocks < 2:
            return
        nthreads = client.nthreads()
        if len(nthreads) < 2:
            return
        total_threads = sum(nthreads.values())
        quota = {w: self.n_samples * t / total_threads for w, t in nthreads.items()}
        load = dict.fromkeys(nthreads, 0.0)
        who = client.who_has(self.handles)
        order = sorted(range(self.n_blocks), key=lambda i: -self.sizes[i])
        moves: dict[int, str] = {}
        for i in order:
            here = [w for w in who.get(self.handles[i].key, ()) if w in load]
            size = self.sizes[i]
            if here and load[here[0]] + size <= quota[here[0]] * 1.05:
                load[here[0]] += size
                continue
            dest = min(load, key=lambda w: load[w] / quota[w])
            if here and dest == here[0]:
                load[dest] += size
                continue
            moves[i] = dest
            load[dest] += size
        if not moves:
            return
        old = [self.handles[i] for i in moves]
        for i, dest in moves.items():
            self.handles[i] = client.submit(
                _identity, self.handles[i], workers=[dest], allow_other_workers=True, pure=False
            )
        from distributed import wait

        wait([self.handles[i] for i in moves])
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
            summaries.append(_merge_summaries([self.summaries[i] for i in g]))
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
        return self._exec.map(func, self.handles, *per_block, **broadcast)

    def map_values(self, func: Callable, *per_block: Sequence, **broadcast: Any) -> list:
        """``func(*per_block_values, **broadcast)``, one task per block, on per-block values
        given explicitly (results of :meth:`map_keep`, ``handles``, offsets); the results stay
        where they were computed. Unlike :meth:`map`, the blocks are not passed implicitly."""
        return self._exec.map(func, *per_block, **broadcast)

    def gather(self, handles: list) -> list:
        """Bring small per-block results to the caller."""
        return self._exec.gather(handles)

    def release(self, handles: list | None = None) -> None:
        """Free per-block results (or, with no argument, the blocks themselves)."""
        self._exec.release(self.handles if handles is None else handles)

    def take_rows(self, global_index: np.ndarray) -> np.ndarray:
        """Rows at the given global positions, in the given order (touches only their blocks)."""
        global_index = np.asarray(global_index, dtype=np.int64)
        block_of = np.searchsorted(np.asarray(self.offsets), global_index, side="right") - 1
        wanted = sorted(set(block_of.tolist()))
        local = [global_index[block_of == b] - self.offsets[b] for b in wanted]
        hs = [self.handles[b] for b in wanted]
        parts = self._exec.gather(self._exec.map(_take, hs, local))
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
        return _merge_summaries(self.summaries)

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


def _identity(block: Block) -> Block:
    return block


def _take(block: Block, idx: np.ndarray) -> np.ndarray:
    return block.X[idx]


def _merge_summaries(summaries: Sequence[BlockSummary]) -> BlockSummary:
    acc = (0, np.zeros_like(summaries[0].mean), np.zeros_like(summaries[0].m2))
    for s in summaries:
        acc = kernels.merge_moments(acc, (s.n, s.mean, s.m2))
    return BlockSummary(
        acc[0],
        acc[1],
        acc[2],
        sum(s.n_nan for s in summaries),
        sum(s.n_inf for s in summaries),
        float(sum(s.weight_sum for s in summaries)),
        int(sum(s.n_bad_weight for s in summaries)),
        np.max([s.max_abs for s in summaries], axis=0),
    )
