"""How much the workers can hold, and whether a job persists its blocks or streams them.

Before anything is persisted, :func:`plan_memory` compares what the job would hold (the
blocks in the working dtype, plus the per-row results kept between passes) with the cluster's
budget: every worker's memory limit times ``fraction`` (default 0.6, below distributed's
spill threshold of 0.7 and pause threshold of 0.8), minus what the worker process already
uses. A worker without a limit counts its host's memory shared among the workers on it.
Persisting needs the whole data in the budget; streaming needs, per worker, one block in
flight per thread (read buffer, block and kernel temporaries: :data:`WORKING_SET_FACTOR`
blocks) plus its share of the per-row results. When neither fits the plan fails at once
with the numbers and the options: a job never sits with paused workers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
from dask.utils import format_bytes

from ..exceptions import MemoryBudgetError
from ..kernels.bounds import BoundsState
from ..progress import in_context

__all__ = [
    "DEFAULT_FRACTION",
    "PAUSE_TIMEOUT_KEY",
    "PERSIST_MODES",
    "WORKING_SET_FACTOR",
    "MemoryPlan",
    "PauseWatch",
    "WorkerMemory",
    "bounds_bytes_per_row",
    "plan_memory",
    "state_bytes_per_row",
    "worker_memory",
]

logger = logging.getLogger(__name__)

#: share of each worker's memory limit the job plans to fill
DEFAULT_FRACTION = 0.6
#: a task on a block holds about this many block-sized buffers at its peak
WORKING_SET_FACTOR = 3
PERSIST_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class WorkerMemory:
    """One worker's memory: its limit (bytes; the host's share when it has none), what its
    process uses now, and its threads."""

    address: str
    limit: int
    in_use: int
    threads: int

    def budget(self, fraction: float) -> int:
        """Bytes the job may fill on this worker."""
        return max(0, int(self.limit * fraction) - self.in_use)


def _host_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _warm_up() -> int:
    """Load what every task needs (compiled kernels, readers) so the memory it takes counts
    as in use; returns the process's resident bytes."""
    import psutil

    from ..kernels import assignment, bounds, init, knn, lloyd, metrics, moments  # noqa: F401

    moments.moments(np.zeros((1, 1)))
    return int(psutil.Process().memory_info().rss)


def worker_memory(client: Any | None) -> list[WorkerMemory]:
    """Every worker's memory (the local process when ``client`` is None), measured once the
    workers have loaded the kernels, so that what they take is not counted as free."""
    if client is None:
        rss = _warm_up()
        return [WorkerMemory("local", _host_memory(), rss, os.cpu_count() or 1)]
    rss = client.run(_warm_up)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    unlimited = [a for a, w in workers.items() if not w.get("memory_limit")]
    host_total: dict[str, int] = {}
    if unlimited:
        totals = client.run(_host_memory, workers=unlimited)
        per_host: dict[str, list[str]] = defaultdict(list)
        for a in workers:
            per_host[workers[a].get("host", a)].append(a)
        for a in unlimited:
            host = workers[a].get("host", a)
            host_total[a] = totals[a] // max(1, len(per_host[host]))
    return [
        WorkerMemory(
            a,
            int(w.get("memory_limit") or host_total[a]),
            int(rss.get(a, w.get("metrics", {}).get("memory", 0))),
            int(w.get("nthreads", 1)),
        )
        for a, w in sorted(workers.items())
    ]


def state_bytes_per_row(n_labellings: int, bounds_bytes: int = 0) -> int:
    """Bytes per row of the results kept between passes, at their peak: the int32 labels of
    every labelling alive at once (a K sweep keeps one per K until its metrics are done) plus
    16 for the silhouette sample's int64 codes and strata (or the KNN reference's codes); the
    k-means|| costs and nearest candidates (16) are released before the labels exist. Each
    Lloyd run pruned by bounds keeps more during its iterations (an int32 label, a float32
    upper bound, a float32 lower bound per group of centres and the segment sums,
    :meth:`kmeans_dask.kernels.bounds.BoundsState.bytes_per_row`: 20 bytes up to k = 19, 40
    at k = 64, 116 at k = 256); ``bounds_bytes`` is their sum over the
    runs alive at once (a sweep runs its K together, :func:`bounds_bytes_per_row`)."""
    return 4 * max(1, n_labellings) + 16 + max(0, bounds_bytes)


def bounds_bytes_per_row(ks: Sequence[int]) -> int:
    """Bytes a row of the bounds of Lloyd runs with these numbers of clusters, run at once."""
    return sum(BoundsState.bytes_per_row(k) for k in ks)


@dataclass(frozen=True)
class MemoryPlan:
    """Whether to persist, and the numbers behind the decision."""

    persist: bool
    data_bytes: int
    state_bytes: int
    block_bytes: int
    budget_bytes: int
    workers: tuple[WorkerMemory, ...]
    fraction: float

    def describe(self) -> str:
        """One line for the log and the manifest."""
        mode = "persisted" if self.persist else "streamed (each pass reads the input again)"
        return (
            f"blocks {format_bytes(self.data_bytes)} + per-row state "
            f"{format_bytes(self.state_bytes)}, largest block {format_bytes(self.block_bytes)}; "
            f"budget {format_bytes(self.budget_bytes)} ({_budget_terms(self)}): {mode}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (for the run manifest)."""
        return {
            "mode": "persist" if self.persist else "stream",
            "data_bytes": self.data_bytes,
            "state_bytes": self.state_bytes,
            "block_bytes": self.block_bytes,
            "budget_bytes": self.budget_bytes,
            "fraction": self.fraction,
            "workers": len(self.workers),
        }


def _budget_terms(p: MemoryPlan) -> str:
    limits = sorted({w.limit for w in p.workers})
    limit = format_bytes(limits[0]) if len(limits) == 1 else "various"
    used = format_bytes(sum(w.in_use for w in p.workers))
    return f"{len(p.workers)} worker(s) x {limit} limit x {p.fraction:g}, minus {used} in use"


def _fits(workers, fraction, held: int, state: int, block: int, factor: int) -> bool:
    """Whether every worker can hold its share of ``held + state`` bytes (by threads) plus
    ``factor`` blocks in flight per thread."""
    threads = sum(w.threads for w in workers)
    return all(
        (held + state) * w.threads / threads + factor * block * w.threads <= w.budget(fraction)
        for w in workers
    )


def plan_memory(
    workers: list[WorkerMemory],
    *,
    n_rows: int,
    row_bytes: int,
    block_bytes: int,
    n_labellings: int,
    fraction: float = DEFAULT_FRACTION,
    persist: str = "auto",
    bounds_bytes: int = 0,
) -> MemoryPlan:
    """Decide persisted or streamed blocks (see the module docstring).

    Parameters
    ----------
    workers : list of WorkerMemory
    n_rows, row_bytes : int
        Rows of the input and bytes of one row in the working dtype.
    block_bytes : int
        Bytes of the largest block.
    n_labellings : int
        Labellings alive at once (the number of K of a sweep; 1 for a fixed K).
    fraction : float
        Share of each worker's limit to fill.
    persist : {'auto', 'always', 'never'}
    bounds_bytes : int
        Bytes a row of the bounds of the Lloyd runs pruned by bounds at once (state, see
        :func:`bounds_bytes_per_row`).

    Raises
    ------
    MemoryBudgetError
        ``always`` that does not fit, or data that cannot even be streamed.
    """
    data = n_rows * row_bytes
    state = n_rows * state_bytes_per_row(n_labellings, bounds_bytes)
    budget = sum(w.budget(fraction) for w in workers)
    plan = MemoryPlan(False, data, state, block_bytes, budget, tuple(workers), fraction)
    persist_ok = _fits(workers, fraction, data, state, block_bytes, WORKING_SET_FACTOR - 1)
    stream_ok = _fits(workers, fraction, 0, state, block_bytes, WORKING_SET_FACTOR)
    if persist in ("auto", "always") and persist_ok:
        return MemoryPlan(True, data, state, block_bytes, budget, tuple(workers), fraction)
    if persist == "always":
        raise MemoryBudgetError(
            f"kmeans.persist=always: the input needs {format_bytes(data + state)} on the "
            f"workers ({n_rows:,} rows x {row_bytes} bytes, plus "
            f"{format_bytes(state)} of per-row results) but the budget is "
            f"{format_bytes(budget)} ({_budget_terms(plan)}). Options: kmeans.persist: auto "
            "(stream when it does not fit), more or larger workers (cluster.n_workers, "
            "cluster.memory_limit), or kmeans.dtype: float32 (half the bytes)."
        )
    if stream_ok:
        return plan
    per_worker = min(w.budget(fraction) / max(w.threads, 1) for w in workers)
    raise MemoryBudgetError(
        f"the input cannot even be streamed: each thread needs about "
        f"{format_bytes(WORKING_SET_FACTOR * block_bytes)} ({WORKING_SET_FACTOR} x a block of "
        f"{format_bytes(block_bytes)}) plus its share of {format_bytes(state)} of per-row "
        f"results, but a worker thread has {format_bytes(int(per_worker))} "
        f"({_budget_terms(plan)}). Options: smaller blocks (kmeans.block_bytes), more or "
        "larger workers (cluster.n_workers, cluster.memory_limit), fewer threads per worker "
        "(cluster.threads_per_worker)."
    )


#: dask config key: how long a worker may stay paused for memory before the job is cancelled
PAUSE_TIMEOUT_KEY = "kmeans_dask.pause-timeout"
_DEFAULT_PAUSE_TIMEOUT = "120s"


class PauseWatch:
    """Cancel the job's work when a worker stays paused for memory, instead of waiting.

    distributed pauses a worker whose process memory passes 80% of its limit and resumes it
    when memory is freed; a job whose data does not fit would then wait forever. While the
    watch is active, a thread polls the workers' status every ``interval`` seconds (5); when one
    has been paused for ``timeout`` seconds (dask config ``kmeans_dask.pause-timeout``,
    default 120 s) it cancels every future of ``client`` with a message saying why, so that
    the waiting call fails, and :attr:`reason` holds the message
    (:meth:`check` raises it as a :class:`MemoryBudgetError`).
    """

    def __init__(self, client: Any, timeout: float | None = None, interval: float = 5.0):
        from dask.utils import parse_timedelta

        self.client = client
        configured = dask.config.get(PAUSE_TIMEOUT_KEY, _DEFAULT_PAUSE_TIMEOUT)
        self.timeout = float(timeout if timeout is not None else parse_timedelta(configured))
        self.interval = interval
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PauseWatch:
        if self.client is not None:
            # in the caller's context: its log records keep an orchestrator's run context
            self._thread = threading.Thread(
                target=in_context(self._run), name="pause-watch", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def check(self) -> None:
        """Raise the watch's :class:`MemoryBudgetError` if it cancelled the work."""
        if self.reason is not None:
            raise MemoryBudgetError(self.reason)

    def _run(self) -> None:
        since: dict[str, float] = {}
        while not self._stop.wait(self.interval):
            try:
                workers = self.client.scheduler_info(n_workers=-1)["workers"]
            except Exception:  # the scheduler is busy or gone: the job's own calls will tell
                continue
            now = time.monotonic()
            paused = {a for a, w in workers.items() if str(w.get("status")) == "paused"}
            since = {a: since.get(a, now) for a in paused}
            stuck = [a for a, t in since.items() if now - t >= self.timeout]
            if stuck:
                self._trip(stuck[0], workers[stuck[0]])
                return

    def _trip(self, address: str, info: dict) -> None:
        from distributed import Future

        used = format_bytes(int(info.get("metrics", {}).get("memory", 0)))
        limit = format_bytes(int(info.get("memory_limit") or 0))
        self.reason = (
            f"worker {address} has been paused for memory for {self.timeout:.0f} s (process "
            f"memory {used} of its {limit} limit), so the job was stopped instead of waiting. "
            "Options: a lower kmeans.memory_fraction or kmeans.block_bytes, kmeans.persist: "
            "never, or more memory per worker (cluster.memory_limit)."
        )
        logger.error(self.reason)
        keys = list(self.client.futures)
        if keys:
            futures = [Future(k, self.client) for k in keys]
            self.client.cancel(futures, reason="paused for memory", msg=self.reason)
