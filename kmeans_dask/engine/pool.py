"""A seeded sample of a dataset's rows: the mini-batch sample pool.

Every row is kept independently with probability ``rate``, decided by its counter-based
uniform of :data:`~kmeans_dask.kernels.streams.Stream.MINIBATCH_SAMPLE` (so the sample is the
same for any chunking and any number of workers), and the kept rows are concatenated in
global row order. A draw is identified by ``(seed, rate)`` alone, which is what lets a
:class:`~kmeans_dask.engine.blocks.BlockSet` keep the draws it has made and hand them to
every fit that asks again (a K sweep's fits share one), and lets a streamed block set draw
one in its summary pass (:class:`PoolRequest`): on data beyond memory that is a read of
the data saved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..kernels.streams import Stream, row_uniforms
from .block import Block, BlockSummary, summarize

__all__ = [
    "PoolCache",
    "PoolRequest",
    "SamplePool",
    "draw_rows",
    "join_rows",
    "summarize_and_draw",
]


@dataclass(frozen=True)
class PoolRequest:
    """A sample to draw in a streamed block set's summary pass: rows kept with probability
    ``rate`` by the uniforms of ``seed``."""

    seed: int
    rate: float


@dataclass(frozen=True)
class SamplePool:
    """Rows sampled from every block, in global row order, with their weights.

    ``n_passes`` is the number of passes over the data that drawing it took *for the caller
    that asked* (0 when it was drawn earlier, in a pass made anyway).
    """

    X: np.ndarray
    w: np.ndarray | None
    rate: float
    n_passes: int

    def scaled(self, transform: object) -> SamplePool:
        """The same rows after ``transform.apply`` (an ``Affine``: element-wise in the rows'
        dtype, so the values are those of the rows drawn from the standardised blocks)."""
        X = self.X.copy()
        transform.apply(X)  # type: ignore[attr-defined]
        return SamplePool(X, self.w, self.rate, self.n_passes)


def draw_rows(block: Block, offset: int, seed: int, rate: float) -> tuple:
    """The block's rows kept at ``rate`` (copies) and their weights; ``offset`` is the
    global index of the block's first row."""
    u = row_uniforms(seed, Stream.MINIBATCH_SAMPLE, offset, block.X.shape[0])
    pick = np.flatnonzero(u < rate)
    return block.X[pick].copy(), None if block.w is None else block.w[pick].copy()


def summarize_and_draw(block: Block, offset: int, seed: int, rate: float) -> tuple:
    """:func:`~kmeans_dask.engine.block.summarize` and :func:`draw_rows` on one read of the
    block. Returns ``(summary, rows, weights)``."""
    summary: BlockSummary = summarize(block)
    return (summary, *draw_rows(block, offset, seed, rate))


def join_rows(parts: Sequence[tuple], rate: float, n_passes: int) -> SamplePool:
    """One pool from the per-block ``(rows, weights)`` in block order."""
    X = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    weighted = any(p[1] is not None for p in parts)
    w = np.concatenate([p[1] for p in parts]) if weighted else None
    return SamplePool(X, w, rate, n_passes)


class PoolCache:
    """The draws made from one set of blocks, by ``(seed, rate)``; shared by its views (a
    sweep's fits run concurrently: one draws, the others wait and reuse it)."""

    def __init__(self, draws: dict[tuple[int, float], SamplePool] | None = None) -> None:
        self.draws = dict(draws or {})
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # pickled with a fitted estimator: no lock
        return {"draws": self.draws}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["draws"])

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return iter(list(self.draws))

    def put(self, seed: int, rate: float, pool: SamplePool) -> None:
        """Keep ``pool`` (drawn in a pass made anyway)."""
        with self._lock:
            self.draws[(int(seed), float(rate))] = replace(pool, n_passes=0)

    def get(self, seed: int, rate: float, draw: Callable[[], SamplePool]) -> SamplePool:
        """The kept draw of ``(seed, rate)``, or ``draw()`` (one pass), kept."""
        key = (int(seed), float(rate))
        with self._lock:
            if key in self.draws:
                return self.draws[key]
            pool = draw()
            self.draws[key] = replace(pool, n_passes=0)
            return pool

    def scaled(self, transform: object) -> PoolCache:
        """The same draws after ``transform`` (for the standardised view of the blocks)."""
        with self._lock:
            return PoolCache({key: p.scaled(transform) for key, p in self.draws.items()})

    def clear(self) -> None:
        """Drop every draw (the blocks are released)."""
        with self._lock:
            self.draws.clear()
