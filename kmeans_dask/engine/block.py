"""One row block and what is learned of it in a pass: the features (C-contiguous), optional
sample weights and labels, and the block summary (moments, non-finite counts, largest values,
weight checks). Also the tasks that build blocks from recipes (streamed or persisted)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels import moments as kernels

__all__ = [
    "Block",
    "BlockSummary",
    "OnRecipe",
    "attach_labels",
    "concat_blocks",
    "load",
    "make_block",
    "merge_summaries",
    "scale_in_place",
    "scaled_summary",
    "summarize",
]


@dataclass(frozen=True)
class Block:
    """One persisted row block: the features (C-contiguous), optional sample weights and
    optional labels (int64 cluster labels for metrics of a given labelling, or float64
    targets for KNN regression)."""

    X: np.ndarray
    w: np.ndarray | None
    labels: np.ndarray | None = None
    unit_rows: tuple[int, ...] | None = None  # rows of each read unit (blocks from recipes)


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
    lo: np.ndarray | None = None  # smallest finite value per column (the profiles' range)
    hi: np.ndarray | None = None  # largest finite value per column


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
    n, mean, m2, n_nan, n_inf, max_abs, lo, hi = kernels.moments_and_range(block.X)
    if block.w is None:
        return BlockSummary(n, mean, m2, n_nan, n_inf, float(n), 0, max_abs, lo, hi)
    w = block.w
    bad = int((~np.isfinite(w) | (w < 0)).sum())
    wsum = float(w[np.isfinite(w)].sum())
    return BlockSummary(n, mean, m2, n_nan, n_inf, wsum, bad, max_abs, lo, hi)


def scaled_summary(s: BlockSummary, mean: np.ndarray, scale: np.ndarray) -> BlockSummary:
    """The summary of a block after ``(x - mean) / scale``, from the summary before it: the
    mean, M2 and the smallest and largest values map exactly (up to rounding; ``scale > 0``),
    the largest ``|value|`` is bounded above."""
    return BlockSummary(
        s.n,
        (s.mean - mean) / scale,
        s.m2 / (scale * scale),
        s.n_nan,
        s.n_inf,
        s.weight_sum,
        s.n_bad_weight,
        (s.max_abs + np.abs(mean)) / scale,
        None if s.lo is None else (s.lo - mean) / scale,
        None if s.hi is None else (s.hi - mean) / scale,
    )


def merge_summaries(summaries: Sequence[BlockSummary]) -> BlockSummary:
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
        _extreme(np.min, [s.lo for s in summaries]),
        _extreme(np.max, [s.hi for s in summaries]),
    )


def _extreme(reduce: Callable, values: list) -> np.ndarray | None:
    # None when any summary lacks it (summaries made without a range)
    return None if any(v is None for v in values) else reduce(values, axis=0)


def load(recipe: Any) -> Block:
    return recipe.load()


def scale_in_place(block: Block, transform: Any) -> Block:
    # the block's array is modified where it lives; the caller drops the unscaled key
    transform.apply(block.X)
    return block


def attach_labels(block: Block, labels: np.ndarray) -> Block:
    return Block(block.X, block.w, np.asarray(labels), block.unit_rows)


class OnRecipe:
    """``func(recipe.load(), ...)``: a task of a streamed pass (loads, computes, drops)."""

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "task")

    def __call__(self, recipe: Any, labels: Any, *args: Any, **kwargs: Any) -> Any:
        block = recipe.load()
        if labels is not None:
            block = Block(block.X, block.w, np.asarray(labels), block.unit_rows)
        return self.func(block, *args, **kwargs)
