"""The E-steps of one Lloyd run: every block's partials of the assignment to the current
centres, reduced along the block tree (:mod:`.tree`).

A partial is ``(sums, weights, inertia, n_computed)``: the fused plain kernel
(:func:`kernels.lloyd.lloyd_partials`) or, with ``bounds=True``, the pruned one
(:func:`kernels.bounds.bounds_partials`: Yinyang's grouped bounds with Hamerly's) whose
per-row state (label, upper and lower bounds, segment sums: ``16 + 4 t`` bytes a row for ``t``
groups of centres) stays next to its block between iterations. Both give bit-identical
partials, hence plain Lloyd's centres, assignments, ``n_iter`` and inertia.

Adaptive: pruning pays only once the centres move little against their spacing (on
overlapping data the first iterations move every centre and settle no row, and a pruned pass
that settles nothing costs more than a plain one). So with bounds, every iteration picks one
of three passes from the centres alone (:meth:`EStep.pass_kind`, deterministic):
``"pruned"`` while the centres moved at most :func:`switch_ratio` times their median half
spacing since the state's centres, else ``"full"`` (every row recomputed and the bounds
rebuilt) once the last iteration's move is that small, else ``"plain"`` (the plain kernel; the
state, if any, is kept as it is and stays valid: the next pruned pass takes the centres' whole
move since it was built).

Persisted blocks on a cluster: one actor call per worker per iteration (:mod:`.groups`),
the state kept in the actor. Otherwise (streamed blocks, no cluster, or per-worker passes
switched off): one task per block, the state kept as that task's result on the worker that
computed it (a streamed block is read again, its state waits for it).
"""

from __future__ import annotations

import logging

import dask
import numpy as np

from ..kernels import bounds as bkernels
from ..kernels import lloyd as kernels
from .blocks import Block, BlockSet
from .groups import GroupsUnavailable, PassFunc, WorkerGroups
from .tree import reduce_root

__all__ = [
    "PLAIN_PASSES",
    "SWITCH_KEY",
    "EStep",
    "TaskStates",
    "bounds_pass",
    "fusable",
    "plain_pass",
    "plain_passes",
    "switch_ratio",
]

logger = logging.getLogger(__name__)

#: dask config key: the largest move ratio (:meth:`BoundsStep.move_ratio`) at which the bounds
#: prune (default: :func:`switch_ratio`; ``inf``: prune in every iteration, 0: never)
SWITCH_KEY = "kmeans_dask.bounds-switch"
#: the default move ratio per dtype, for every k. Measured to convergence in process, one
#: thread, overlapping blobs (d = 32) with Yinyang's local filter (session 15,
#: benchmarks/README.md): k = 16, 64, 256 in float64 were fastest from 0.05 (0.1 at k = 64
#: too; the former 0.1 x 16 / k pruned far too late at k = 256: 6.0 s against 4.4 s), k = 64
#: in float32 from 0.025 (its product is cheap: the bounds' bookkeeping weighs more)
SWITCH_RATIO = {"float64": 0.05, "float32": 0.025}


def switch_ratio(k: int, dtype: np.dtype) -> float:
    """The move ratio up to which the bounds prune for ``k`` centres of ``dtype`` (dask
    config :data:`SWITCH_KEY` if set; else :data:`SWITCH_RATIO`, the same for every ``k``)."""
    value = dask.config.get(SWITCH_KEY, None)
    if value is not None:
        return float(value)
    return SWITCH_RATIO.get(np.dtype(dtype).name, SWITCH_RATIO["float64"])


def plain_pass(block: Block, state: None, cs: kernels.CentreSet, exact: bool = True) -> tuple:
    """The plain kernel's partial of one block (no state); ``exact``: with the exact
    inertia (else 0 in its place)."""
    sums, wsum, inertia = kernels.lloyd_partials(block.X, cs, block.w, exact)
    return (sums, wsum, inertia, block.X.shape[0] * cs.k), None


def keep_pass(block: Block, state, cs: kernels.CentreSet, exact: bool = True) -> tuple:
    """The plain kernel's partial of one block; the block's bounds state is kept as it is."""
    return plain_pass(block, None, cs, exact)[0], state


#: the per-block passes :func:`plain_passes` can run together (without exact distances)
PLAIN_PASSES = (plain_pass, keep_pass)


def fusable(func: PassFunc, broadcast: dict) -> bool:
    """Whether a pass can join :func:`plain_passes`: a plain kernel pass without the exact
    distances (every iteration after a run's first)."""
    return func in PLAIN_PASSES and not broadcast.get("exact", True)


def plain_passes(block: Block, states: list, broadcasts: list[dict]) -> list[tuple]:
    """Several fits' :func:`fusable` passes on one block in one pass over its rows
    (:func:`kernels.lloyd.lloyd_partials_multi`): per fit ``(partial, new state)``, bit for
    bit what its own pass returns (``plain_pass`` drops the state, ``keep_pass`` keeps it)."""
    css = [bc["cs"] for bc in broadcasts]
    parts = kernels.lloyd_partials_multi(block.X, css, block.w)
    return [
        ((sums, wsum, inertia, block.X.shape[0] * cs.k), state)
        for (sums, wsum, inertia), cs, state in zip(parts, css, states, strict=True)
    ]


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
        self.reference = reference
        self.bounds = bounds
        # ``groups=False``: the passes run elsewhere (a subclass's :meth:`_pass`)
        self.groups = WorkerGroups.start(bs) if groups else None
        self._tasks = TaskStates(bs)  # the states of the per-block task path
        self._centres: np.ndarray | None = None  # the centres the states were built against
        self._last: np.ndarray | None = None  # the previous iteration's centres
        self._groups: np.ndarray | None = None  # the centres' Yinyang groups, kept for the run
        self._cum: tuple | None = None  # the cumulative drifts the states were written against
        self._step: bkernels.BoundsStep | None = None  # the last bounds pass's broadcast
        self._full = True  # no usable state
        self._ratio: float | None = None  # switch_ratio(k, dtype), set by the first call
        # the data's weighted sum of squares about the reference, from the first pass's exact
        # inertia: later passes skip the exact distances (:func:`kernels.inertia_shift`)
        self._sum_sq: float | None = None
        #: the kind of every pass so far ("plain", "full" or "pruned")
        self.kinds: list[str] = []

    def __call__(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, int]:
        """``(sums, weights, inertia, n_skipped)`` of the assignment to ``C``; ``n_skipped``
        counts the row-centre distances the bounds spared against ``n_samples * k``.

        The first call's inertia is summed row by row from exact distances; later ones are
        that pass's sum of squares plus :func:`kernels.inertia_shift` of their sums (the
        same for plain and pruned passes, whose sums are bit-identical)."""
        kind, func, bc = self._broadcast(C)
        kind, total = self._pass(C, kind, func, bc)
        self.kinds.append(kind)
        if kind != "plain":
            self._centres, self._full, self._cum = C, False, self._step.cum
        self._last = C
        sums, wsum, inertia, computed = total
        shift = kernels.inertia_shift(C, self.reference, sums, wsum)
        if self._sum_sq is None:
            self._sum_sq = float(inertia) - shift
        else:
            inertia = self._sum_sq + shift
        return sums, wsum, float(inertia), int(self.bs.n_samples * C.shape[0] - computed)

    def _pass(self, C: np.ndarray, kind: str, func, bc: dict) -> tuple[str, tuple]:
        """The kind and total partial of one pass of ``func`` (broadcast ``bc``) over every
        block (the kind changes when the per-worker passes fail and the pass restarts)."""
        total = None
        if self.groups is not None:
            try:
                total, _ = self.groups.run(func, fresh=self._full and kind != "plain", **bc)
            except GroupsUnavailable as exc:
                logger.warning("per-worker passes failed twice (%s); one task per block", exc)
                self.groups, self._full = None, True
                kind, func, bc = self._broadcast(C)
        if total is None:
            total = self._by_block(func, bc)
        return kind, total

    def pass_kind(self, step: bkernels.BoundsStep, C: np.ndarray) -> str:
        """``"pruned"``, ``"full"`` or ``"plain"`` for centres ``C`` (``step``: their
        broadcast against the states' centres; see the module docstring)."""
        if not self._full and step.move_ratio() <= self._ratio:
            return "pruned"
        moved = np.inf if self._last is None else step.move_ratio(self._last)
        return "full" if moved <= self._ratio else "plain"

    def _broadcast(self, C: np.ndarray) -> tuple:
        exact = self._sum_sq is None  # only the first pass needs the exact distances
        if not self.bounds:
            cs = kernels.CentreSet(C, self.reference)
            return "plain", plain_pass, {"cs": cs, "exact": exact}
        step = bkernels.bounds_step(
            C, self._centres, self.reference, self._full, self._groups, self._cum
        )
        self._groups = step.groups
        if self._ratio is None:
            self._ratio = switch_ratio(C.shape[0], C.dtype)
        kind = self.pass_kind(step, C)
        if kind == "plain":
            return kind, keep_pass, {"cs": step.cs, "exact": exact}
        if kind == "full" and not step.full:
            # every row recomputed: the bounds are written against zero cumulative drifts
            step = bkernels.bounds_step(C, self._centres, self.reference, True, self._groups)
        self._step = step
        return kind, bounds_pass, {"step": step}

    def _by_block(self, func, bc: dict) -> tuple:
        return self._tasks.run(func, bc, stateful=self.bounds, fresh=self._full)

    def reset(self) -> None:
        """Recompute every row in the next iteration."""
        self._full = True

    def close_states(self) -> None:
        """Free the per-block states held as task results."""
        self._tasks.release()

    def close(self) -> None:
        """Free everything held on the workers for this run."""
        self.close_states()
        if self.groups is not None:
            self.groups.close()
