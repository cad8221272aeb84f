"""The E-steps of one Lloyd run: every block's partials of the assignment to the current
centres, reduced along the block tree (:mod:`.tree`).

A partial is ``(sums, weights, inertia, n_computed)``: the fused plain kernel
(:func:`kernels.lloyd.lloyd_partials`) or, with ``bounds=True``, the pruned one
(:func:`kernels.bounds.bounds_partials`: Yinyang's grouped bounds with Hamerly's) whose
per-row state (label and lower bounds, ``4 + 4 t`` bytes a row for ``t`` groups of centres)
stays next to its block between iterations. Both give bit-identical partials, hence plain
Lloyd's centres, assignments, ``n_iter`` and inertia.

Persisted blocks on a cluster: one actor call per worker per iteration (:mod:`.groups`),
the state kept in the actor. Otherwise (streamed blocks, no cluster, or per-worker passes
switched off): one task per block, the state kept as that task's result on the worker that
computed it (a streamed block is read again, its state waits for it).
"""

from __future__ import annotations

import logging

import numpy as np

from ..kernels import bounds as bkernels
from ..kernels import lloyd as kernels
from .blocks import Block, BlockSet
from .groups import GroupsUnavailable, WorkerGroups
from .tree import reduce_root

__all__ = ["EStep", "bounds_pass", "plain_pass"]

logger = logging.getLogger(__name__)


def plain_pass(block: Block, state: None, cs: kernels.CentreSet) -> tuple:
    """The plain kernel's partial of one block (no state)."""
    sums, wsum, inertia = kernels.lloyd_partials(block.X, cs, block.w)
    return (sums, wsum, inertia, block.X.shape[0] * cs.k), None


def bounds_pass(block: Block, state: bkernels.BoundsState | None, step: bkernels.BoundsStep):
    """The pruned kernel's partial of one block and its new state."""
    # in place: the state is this pass's own (an actor's, or the previous task's result, which
    # is released once this one exists); a rerun on an updated state stays exact (the
    # bounds only loosen)
    sums, wsum, inertia, computed, new = bkernels.bounds_partials(
        block.X, block.w, step, state, inplace=True
    )
    return (sums, wsum, inertia, computed), new


def _task(block: Block, previous: tuple | None, pass_func, **broadcast) -> tuple:
    # one block, one task: the state travels inside the previous result (a handle)
    return pass_func(block, None if previous is None else previous[1], **broadcast)


def _partial(result: tuple) -> tuple:
    return result[0]


class EStep:
    """Call once per iteration with the centres; :meth:`reset` when the centres moved by more
    than a mean update (empty-cluster relocation: the bounds restart), :meth:`close` at the
    end (frees the states and the per-worker actors)."""

    def __init__(
        self, bs: BlockSet, reference: np.ndarray, bounds: bool, *, groups: bool = True
    ) -> None:
        self.bs = bs
        self.reference = reference
        self.bounds = bounds
        # ``groups=False``: the passes run elsewhere (a subclass's :meth:`_pass`)
        self.groups = WorkerGroups.start(bs) if groups else None
        self._results: list | None = None  # per-block results holding the states (tasks)
        self._centres: np.ndarray | None = None
        self._groups: np.ndarray | None = None  # the centres' Yinyang groups, kept for the run
        self._full = True

    def __call__(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        """``(sums, weights, inertia, n_skipped)`` of the assignment to ``C``; ``n_skipped``
        counts the row-centre distances the bounds spared against ``n_samples * k``."""
        func, bc = self._broadcast(C)
        total = self._pass(C, func, bc)
        self._centres, self._full = C, False
        sums, wsum, inertia, computed = total
        return sums, wsum, float(inertia), int(self.bs.n_samples * C.shape[0] - computed)

    def _pass(self, C: np.ndarray, func, bc: dict) -> tuple:
        """The total partial of one pass of ``func`` with broadcast ``bc`` over every block."""
        total = None
        if self.groups is not None:
            try:
                total, _ = self.groups.run(func, fresh=self._full, **bc)
            except GroupsUnavailable as exc:
                logger.warning("per-worker passes failed twice (%s); one task per block", exc)
                self.groups, self._full = None, True
                bc = self._broadcast(C)[1]
        if total is None:
            total = self._by_block(func, bc)
        return total

    def _broadcast(self, C: np.ndarray) -> tuple:
        if self.bounds:
            step = bkernels.bounds_step(
                C, self._centres, self.reference, self._full, self._groups
            )
            self._groups = step.groups
            return bounds_pass, {"step": step}
        return plain_pass, {"cs": kernels.CentreSet(C, self.reference)}

    def _by_block(self, func, bc: dict) -> tuple:
        bs = self.bs
        if not self.bounds:
            parts = [r[0] for r in bs.map(func, [None] * bs.n_blocks, **bc)]
        else:
            previous = self._results if self._results is not None and not self._full else None
            results = bs.map_keep(_task, previous or [None] * bs.n_blocks, pass_func=func, **bc)
            parts = bs.gather(bs.map_values(_partial, results))
            self.close_states()
            self._results = results
        return reduce_root({(i, i + 1): p for i, p in enumerate(parts)}, bs.n_blocks)

    def reset(self) -> None:
        """Recompute every row in the next iteration."""
        self._full = True

    def close_states(self) -> None:
        """Free the per-block states held as task results."""
        if self._results is not None:
            self.bs.release(self._results)
        self._results = None

    def close(self) -> None:
        """Free everything held on the workers for this run."""
        self.close_states()
        if self.groups is not None:
            self.groups.close()
