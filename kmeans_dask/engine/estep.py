"""The E-steps of one Lloyd run: every block's partials of the assignment to the current
centres, reduced along the block tree (:mod:`.tree`).

The per-block passes are in :mod:`.passes` (plain and pruned kernels, bit-identical
partials); which one each iteration runs, and what its partials mean, is decided by a
:class:`.passplan.PassPlan` (pure, pickled to a worker when the workers lead the
iterations: :mod:`.drive`). Here the passes are run.

Persisted blocks on a cluster: one actor call per worker per iteration (:mod:`.groups`),
the state kept in the actor. Otherwise (streamed blocks, no cluster, or per-worker passes
switched off): one task per block, the state kept as that task's result on the worker that
computed it (a streamed block is read again, its state waits for it).
"""

from __future__ import annotations

import logging

import numpy as np

from . import drive
from .blocks import Block, BlockSet
from .groups import GroupsUnavailable, WorkerGroups
from .passes import PLAIN_PASSES, bounds_pass, fusable, keep_pass, plain_pass, plain_passes
from .passplan import SWITCH_KEY, SWITCH_RATIO, PassPlan, switch_ratio
from .tree import reduce_root

__all__ = [
    "PLAIN_PASSES",
    "SWITCH_KEY",
    "SWITCH_RATIO",
    "EStep",
    "TaskStates",
    "bounds_pass",
    "fusable",
    "keep_pass",
    "plain_pass",
    "plain_passes",
    "switch_ratio",
]

logger = logging.getLogger(__name__)


def _task(block: Block, previous: tuple | None, pass_func, **broadcast) -> tuple:
    # one block, one task: the state travels inside the previous result (a handle)
    return pass_func(block, None if previous is None else previous[1], **broadcast)


def _partial(result: tuple) -> tuple:
    return result[0]


class TaskStates:
    """One task per block for a pass, the per-block states kept as the tasks' results on the
    workers that computed them (the path without per-worker actors: streamed blocks, no
    cluster, or ``worker-groups`` off); a streamed block is read again, its state waits for
    it. Used by :class:`EStep` and by the sweep's lockstep."""

    def __init__(self, bs: BlockSet) -> None:
        self.bs = bs
        self._results: list | None = None

    def run(self, func, bc: dict, *, stateful: bool, fresh: bool) -> tuple:
        """The total partial of ``func(block, state, **bc)`` over every block (reduced along
        the block tree); ``stateful``: keep the new states for the next run; ``fresh``:
        start without the kept ones."""
        bs = self.bs
        if not stateful:
            parts = [r[0] for r in bs.map(func, [None] * bs.n_blocks, **bc)]
        else:
            previous = None if fresh else self._results
            results = bs.map_keep(_task, previous or [None] * bs.n_blocks, pass_func=func, **bc)
            parts = bs.gather(bs.map_values(_partial, results))
            self.release()
            self._results = results
        return reduce_root({(i, i + 1): p for i, p in enumerate(parts)}, bs.n_blocks)

    def release(self) -> None:
        """Free the kept states."""
        if self._results is not None:
            self.bs.release(self._results)
        self._results = None


class EStep:
    """Call once per iteration with the centres; :meth:`reset` when the centres moved by more
    than a mean update (empty-cluster relocation: the bounds restart), :meth:`close` at the
    end (frees the states and the per-worker actors)."""

    def __init__(
        self, bs: BlockSet, reference: np.ndarray, bounds: bool, *, groups: bool = True
    ) -> None:
        self.bs = bs
        #: the run's pass decisions (replaced by the updated copy after a worker-led batch)
        self.plan = PassPlan(reference, bounds, bs.n_samples)
        # ``groups=False``: the passes run elsewhere (a subclass's :meth:`_pass`)
        self.groups = WorkerGroups.start(bs) if groups else None
        self._tasks = TaskStates(bs)  # the states of the per-block task path

    @property
    def bounds(self) -> bool:
        """Whether the run prunes with per-row bounds."""
        return self.plan.bounds

    @property
    def kinds(self) -> list[str]:
        """The kind of every pass so far ("plain", "full" or "pruned")."""
        return self.plan.kinds

    def __call__(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        """``(sums, weights, inertia, n_skipped)`` of the assignment to ``C``
        (:meth:`.passplan.PassPlan.account`)."""
        kind, func, bc = self.plan.choose(C)
        kind, total = self._pass(C, kind, func, bc)
        return self.plan.account(C, kind, total)

    def iterate(self, C: np.ndarray, n_iter: int, tol_abs: float) -> drive.Batch:
        """Lloyd iterations from ``C`` (:func:`.drive.iterations`, at most ``n_iter``): a batch
        led by a worker when the passes run per worker (:data:`.drive.LEAD_KEY` seconds of
        them), else one iteration driven from here."""
        budget = drive.lead_seconds()
        if self.groups is not None and budget > 0:
            batch = self.groups.lead(drive.lead, self.plan, C, n_iter, tol_abs, budget)
            if batch is not None:
                self.plan = batch.plan
                return batch
            self.plan.reset()  # a worker was lost: the states are gone
        return drive.run_sync(drive.iterations(self.plan, C, 1, tol_abs), self._pass)

    def _pass(self, C: np.ndarray, kind: str, func, bc: dict) -> tuple[str, tuple]:
        """The kind and total partial of one pass of ``func`` (broadcast ``bc``) over every
        block (the kind changes when the per-worker passes fail and the pass restarts)."""
        total = None
        if self.groups is not None:
            try:
                total, _ = self.groups.run(func, fresh=self.plan.fresh(kind), **bc)
            except GroupsUnavailable as exc:
                logger.warning("per-worker passes failed twice (%s); one task per block", exc)
                self.groups = None
                self.plan.reset()
                kind, func, bc = self.plan.choose(C)
        if total is None:
            total = self._by_block(func, bc)
        return kind, total

    def _by_block(self, func, bc: dict) -> tuple:
        return self._tasks.run(func, bc, stateful=self.bounds, fresh=self.plan.full)

    def reset(self) -> None:
        """Recompute every row in the next iteration."""
        self.plan.reset()

    def close_states(self) -> None:
        """Free the per-block states held as task results."""
        self._tasks.release()

    def close(self) -> None:
        """Free everything held on the workers for this run."""
        self.close_states()
        if self.groups is not None:
            self.groups.close()
