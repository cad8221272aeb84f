"""Where per-block functions run: on a ``distributed`` client, or on a local thread pool when
no cluster is set up (the compiled kernels release the GIL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask

from ..progress import ProgressTask
from .placement import spread

__all__ = ["Executor", "advance_when_done", "get_client"]


def get_client() -> Any | None:
    """The current ``distributed`` client, or None when none is set up."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


class Executor:
    """Runs per-block functions either on a distributed client or on a local thread pool."""

    def __init__(self, client: Any | None, tag: str | None = None) -> None:
        self.client = client
        self.tag = tag

    @property
    def n_threads(self) -> int:
        if self.client is not None:
            return max(1, sum(self.client.nthreads().values()))
        return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)

    def map(self, func: Callable, *iterables: Sequence, **kwargs: Any) -> list:
        """Apply ``func`` per block; results stay where they were computed (handles)."""
        if self.client is not None:
            if self.tag is None:
                return self.client.map(func, *iterables, pure=False, **kwargs)
            keys = self._keys(func, len(iterables[0]))
            return self.client.map(func, *iterables, key=keys, pure=False, **kwargs)
        args = list(zip(*iterables, strict=True))
        if len(args) <= 1 or dask.config.get("scheduler", None) in ("sync", "synchronous"):
            return [func(*a, **kwargs) for a in args]
        with ThreadPoolExecutor(max_workers=min(self.n_threads, len(args))) as pool:
            return list(pool.map(lambda a: func(*a, **kwargs), args))

    def map_spread(self, func: Callable, items: Sequence, weights: Sequence[float]) -> list:
        """``func(item)`` per item, results left where computed, the items placed on the
        workers in proportion to their threads by ``weights`` (:func:`.placement.spread`).

        For results that stay (persisted blocks): placed where they will be used, no worker
        ever holds more than its share, not even before a rebalancing. The placement is
        loose: should a worker be gone, its items run on the others.
        """
        if self.client is None:
            return self.map(func, items)
        nthreads = self.client.nthreads()
        if len(nthreads) < 2:
            return self.map(func, items)
        places = spread(weights, nthreads)
        keys = self._keys(func, len(items))
        return [
            self.client.submit(
                func, item, workers=[dest], allow_other_workers=True, pure=False, key=key
            )
            for item, dest, key in zip(items, places, keys, strict=True)
        ]

    def _keys(self, func: Callable, n: int) -> list[str]:
        """Unique task keys named after ``func``, prefixed by the tag when there is one
        (tagged keys make one job's tasks recognisable on the cluster's task stream)."""
        name = getattr(func, "__name__", "task").lstrip("_")
        prefix = f"{self.tag}-{name}" if self.tag else name
        return [f"{prefix}-{uuid.uuid4().hex}" for _ in range(n)]

    def gather(self, handles: list, progress: ProgressTask | None = None) -> list:
        """Bring (small) results to the caller. When a task failed, every other one is
        waited for first: no task of a failed pass is still running (e.g. writing) when the
        error reaches the caller. ``progress`` is advanced by one per handle done."""
        if progress is not None:
            advance_when_done(handles, progress)
        if self.client is not None:
            try:
                return self.client.gather(handles)
            except Exception:
                self.client.gather(handles, errors="skip")  # returns once all are done
                raise
        return handles

    def scatter(self, values: list) -> list:
        """Place in-memory values on the workers (unchanged locally)."""
        if self.client is not None:
            # unique keys: identical data scattered by two fits must not share (and release) a key
            return self.client.scatter(values, hash=False)
        return values

    def compute(self, delayed_values: list) -> list:
        """Start computing ``delayed_values``: futures on a cluster (the results stay on the
        workers), plain values locally."""
        if self.client is not None:
            return self.client.compute(delayed_values)
        return list(dask.compute(*delayed_values))

    def release(self, handles: list) -> None:
        """Free results held on the cluster (nothing to do locally)."""
        if self.client is not None:
            for h in handles:
                h.release()


def advance_when_done(handles: list, progress: ProgressTask) -> None:
    """Advance ``progress`` by one as each handle completes: distributed futures call back
    (from the client's callback thread), plain values are done already."""
    for h in handles:
        add = getattr(h, "add_done_callback", None)
        if add is None:
            progress.advance()
        else:
            add(lambda _future: progress.advance())
