"""Lloyd iterations as one loop with no I/O of its own, driven by the client or, for a batch
of iterations, by the worker that leads the per-worker passes.

Driven from the client, every iteration costs a round trip from the client to every worker
and back plus the M-step between (measured on 2 workers here: ~10 ms an iteration beside
the kernels, 1.2 s of a 6.6 s Lloyd phase at k = 256). A worker-to-worker actor call costs
~1 ms, so with per-worker passes one worker (the leader, :meth:`.groups.GroupActor.lead`)
runs batches of iterations itself: it chooses each pass, runs it on its own blocks and asks
its peers for theirs, reduces the partials, takes the M-step and goes on, and returns to the
client after about :data:`LEAD_SECONDS` (so progress, callbacks and faults are seen there)
or at convergence. The loop is the same code on both sides (:func:`iterations`): the same
decisions, sums and centres, so the results are bit for bit the client-driven ones.

An iteration whose M-step finds an empty cluster stops the batch: its relocation needs a
pass for the farthest rows, which the client runs (:class:`Batch.pending`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field

import dask
import numpy as np

from ..kernels import lloyd as kernels
from .passplan import PassPlan

__all__ = ["LEAD_KEY", "LEAD_SECONDS", "Batch", "iterations", "lead", "lead_seconds", "run_sync"]

#: dask config key: seconds of iterations a worker leads before it reports to the client
#: (0: the client drives every iteration)
LEAD_KEY = "kmeans_dask.lead-seconds"
#: the default of :data:`LEAD_KEY`
LEAD_SECONDS = 1.0

#: one pass to run: ``(centres, kind, per-block pass, broadcast)``
Request = tuple[np.ndarray, str, Callable, dict]


def lead_seconds() -> float:
    """Seconds of iterations a worker may lead at a time (dask config :data:`LEAD_KEY`)."""
    return float(dask.config.get(LEAD_KEY, LEAD_SECONDS))


@dataclass
class Batch:
    """What a run of :func:`iterations` did.

    ``records`` holds ``(inertia, centre shift, seconds, n_skipped)`` per completed
    iteration; ``centres`` are the centres after the last one (the start of the next);
    ``pending``: ``(sums, weights, inertia, n_skipped, seconds)`` of an iteration that found
    an empty cluster, whose M-step is still to be taken (from ``centres``).
    """

    plan: PassPlan
    centres: np.ndarray
    records: list[tuple[float, float, float, int]] = field(default_factory=list)
    converged: bool = False
    pending: tuple | None = None


def _no_rows(m: int) -> tuple:
    raise AssertionError("an empty cluster reached the M-step of a batch")  # pragma: no cover


def iterations(
    plan: PassPlan, C: np.ndarray, n_iter: int, tol_abs: float, budget: float = np.inf
) -> Generator[Request, tuple[str, tuple], Batch]:
    """Up to ``n_iter`` Lloyd iterations from centres ``C``, stopping at convergence
    (squared centre shift at most ``tol_abs``), at an empty cluster, or once ``budget``
    seconds have passed. Yields each pass to run and is sent back ``(kind, total partial)``
    (the kind may change when the runner had to fall back); returns the :class:`Batch`."""
    batch = Batch(plan, C)
    start = time.perf_counter()
    for _ in range(n_iter):
        t0 = time.perf_counter()
        kind, func, bc = plan.choose(C)
        kind, total = yield C, kind, func, bc
        sums, wsum, inertia, skipped = plan.account(C, kind, total)
        if (wsum <= 0).any():
            batch.pending = (sums, wsum, inertia, skipped, time.perf_counter() - t0)
            break
        C, shift, _ = kernels.m_step(C, sums, wsum, _no_rows)
        batch.centres = C
        batch.records.append((inertia, shift, time.perf_counter() - t0, skipped))
        if shift <= tol_abs:
            batch.converged = True
            break
        if time.perf_counter() - start >= budget:
            break
    return batch


def run_sync(steps: Generator[Request, tuple[str, tuple], Batch], run_pass: Callable) -> Batch:
    """Drive :func:`iterations` with ``run_pass(C, kind, func, bc) -> (kind, total)``."""
    request = next(steps)
    while True:
        try:
            request = steps.send(run_pass(*request))
        except StopIteration as stop:
            return stop.value


async def lead(
    run_pass: Callable[[Callable, bool, dict], Awaitable[tuple]],
    plan: PassPlan,
    C: np.ndarray,
    n_iter: int,
    tol_abs: float,
    budget: float,
) -> Batch:
    """Drive :func:`iterations` on the leading worker: ``await run_pass(func, fresh, bc)``
    is one pass over every worker's blocks, reduced to the total partial."""
    steps = iterations(plan, C, n_iter, tol_abs, budget)
    request = next(steps)
    while True:
        _, kind, func, bc = request
        total = await run_pass(func, plan.fresh(kind), bc)
        try:
            request = steps.send((kind, total))
        except StopIteration as stop:
            return stop.value
