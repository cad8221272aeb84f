"""Concurrent Lloyd runs (the K of a sweep) in lockstep: one pass over the data per round.

Alone, every fit of a K sweep makes its own pass per iteration: with K = 2..10 that is nine
actor calls per worker per round, nine sets of actors, and on streamed blocks nine reads of
every block from storage. Here each fit's :class:`SharedEStep` hands its pass (the per-block
function and its broadcast: a ``CentreSet`` or a ``BoundsStep``) to a :class:`Lockstep`;
once every fit currently inside its Lloyd loop has handed one in (or left), one combined
pass runs: per worker one actor call (persisted blocks; one set of actors for all fits) or
per block one task (streamed blocks: read once for all fits) applies every fit's function to
the block, with that fit's own per-block state (the bounds), and returns one partial per fit.
The partials are added along the block tree of :mod:`.tree` fit by fit, so every fit gets
exactly the partial it would have got alone: the same centres, ``n_iter``, inertia, labels.

Only the E-steps meet. Initialisation, empty-cluster relocation and the final assignment stay
per fit; a fit busy with one of them is simply the last to hand in its next E-step. A fit that
leaves its Lloyd loop (converged, ``max_iter``, or an error) no longer counts, so the others
never wait for it. An error raised by one fit's function on a block reaches that fit only;
an error of the pass itself (a block that cannot be read) reaches every fit of the round.
Switch off with dask config ``kmeans_dask.sweep-lockstep: false``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np

from .blocks import Block, BlockSet
from .estep import EStep, TaskStates, fusable, plain_passes
from .groups import GroupsUnavailable, PassFunc, WorkerGroups
from .tree import add_partials

__all__ = ["LOCKSTEP_KEY", "Lockstep", "Member", "SharedEStep", "combined_pass", "use_lockstep"]

logger = logging.getLogger(__name__)

#: dask config key: run the E-steps of a K sweep's fits as one pass per round (default True)
LOCKSTEP_KEY = "kmeans_dask.sweep-lockstep"

#: one fit's request in a combined pass: ``(member id, func, fresh, broadcast)``
Request = tuple[int, PassFunc, bool, dict]


def use_lockstep() -> bool:
    """Whether a K sweep shares its fits' passes (dask config ``sweep-lockstep``)."""
    return bool(dask.config.get(LOCKSTEP_KEY, True))


class Failed:
    """One fit's error on one block, carried home in place of its partial."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _add_one(a: Any, b: Any) -> Any:
    if isinstance(a, Failed):
        return a
    if isinstance(b, Failed):
        return b
    return add_partials(a, b)


class PerFit:
    """The partials of several fits side by side; ``+`` adds them fit by fit (the tree's
    order, hence each fit's bits, are those of the fit alone)."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple) -> None:
        self.parts = parts

    def __add__(self, other: PerFit) -> PerFit:
        return PerFit(tuple(_add_one(a, b) for a, b in zip(self.parts, other.parts, strict=True)))

    def __getstate__(self) -> tuple:
        return self.parts

    def __setstate__(self, parts: tuple) -> None:
        self.parts = parts


def combined_pass(
    block: Block, state: dict | None, requests: Sequence[Request]
) -> tuple[PerFit, dict]:
    """Every request's function on one block, each with its own state (by member id).

    The plain Lloyd passes among them (after each fit's first) run in one pass over the
    block's rows (:func:`.estep.plain_passes`: each tile of rows is read from memory once for
    all of them; the same partials bit for bit); the others (bounds, a first pass with the
    exact distances) one by one."""
    states = state or {}
    out: dict[int, Any] = {}
    new: dict[int, Any] = {}
    plain = [r for r in requests if fusable(r[1], r[3])]
    if len(plain) >= 2:
        try:
            done = plain_passes(
                block,
                [None if fresh else states.get(member) for member, _, fresh, _ in plain],
                [broadcast for *_, broadcast in plain],
            )
        except Exception:  # run them one by one below: each fit hears its own error
            done = None
        if done is not None:
            for (member, *_), (part, kept) in zip(plain, done, strict=True):
                out[member], new[member] = part, kept
    for member, func, fresh, broadcast in requests:
        if member in out:
            continue
        try:
            out[member], new[member] = func(
                block, None if fresh else states.get(member), **broadcast
            )
        except Exception as exc:  # this fit's error, not the others'
            out[member] = Failed(exc)
    return PerFit(tuple(out[r[0]] for r in requests)), new


class _Request:
    def __init__(self, member: Member, func: PassFunc, fresh: bool, broadcast: dict) -> None:
        self.member = member
        self.item: Request = (member.id, func, fresh, broadcast)
        self.outcome: Any = None
        self.done = False

    def result(self) -> Any:
        if isinstance(self.outcome, Failed):
            raise self.outcome.exc
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class Member:
    """One fit's place in a :class:`Lockstep` (from :meth:`Lockstep.join`)."""

    def __init__(self, lockstep: Lockstep, member_id: int, stateful: bool) -> None:
        self.lockstep = lockstep
        self.id = member_id
        self.stateful = stateful

    def run(self, func: PassFunc, fresh: bool, **broadcast: Any) -> Any:
        """This fit's total partial of ``func`` over every block (``fresh``: without its
        state), from the next combined pass; blocks until that pass is done."""
        return self.lockstep._submit(_Request(self, func, fresh, broadcast))

    def leave(self) -> None:
        """No more passes for this fit: the others stop waiting for it."""
        self.lockstep._leave(self)


class Lockstep:
    """The meeting point of concurrent fits over one :class:`BlockSet`.

    Each fit :meth:`join` s (through :meth:`estep`) for its Lloyd loop and leaves at its end;
    :meth:`close` releases the actors and states once no fit is left.
    """

    def __init__(self, bs: BlockSet) -> None:
        self.bs = bs
        self.n_passes = 0  # combined passes run
        self._cond = threading.Condition()
        self._active: set[int] = set()
        self._stateful: set[int] = set()  # members whose function keeps per-block state
        self._pending: list[_Request] = []
        self._running = False
        self._next_id = 0
        self._groups: WorkerGroups | None = None
        self._try_groups = True
        self._tasks = TaskStates(bs)  # the per-block task path's states (all fits')

    def join(self, stateful: bool) -> Member:
        """A new fit in the Lloyd phase (``stateful``: its function keeps per-block state)."""
        with self._cond:
            member = Member(self, self._next_id, stateful)
            self._next_id += 1
            self._active.add(member.id)
            if stateful:
                self._stateful.add(member.id)
            return member

    def estep(self, bs: BlockSet, reference: np.ndarray, bounds: bool) -> SharedEStep:
        """The E-steps of one Lloyd run over ``bs`` (the same blocks, e.g. a tagged view)."""
        return SharedEStep(self.join(bounds), bs, reference, bounds)

    def _leave(self, member: Member) -> None:
        with self._cond:
            self._active.discard(member.id)
            self._cond.notify_all()

    def _submit(self, request: _Request) -> Any:
        with self._cond:
            if request.member.id not in self._active:
                raise RuntimeError("this fit has left the lockstep")
            self._pending.append(request)
            self._cond.notify_all()
            while not request.done:
                # the last of the fits in their Lloyd loop to hand in a pass runs it
                if not self._running and len(self._pending) == len(self._active):
                    batch = sorted(self._pending, key=lambda r: r.member.id)
                    self._pending, self._running = [], True
                    break
                self._cond.wait()
            else:
                return request.result()
        outcomes: dict[int, Any] = {}
        try:
            outcomes = self._run([r.item for r in batch])
        except Exception as exc:  # the pass itself failed: every fit of the round hears it
            outcomes = {r.member.id: exc for r in batch}
        finally:
            with self._cond:
                for r in batch:
                    r.outcome = outcomes.get(r.member.id, RuntimeError("combined pass interrupted"))
                    r.done = True
                self._running = False
                self._cond.notify_all()
        return request.result()

    def _run(self, requests: list[Request]) -> dict[int, Any]:
        """One combined pass: each member's total partial (or its :class:`Failed`)."""
        self.n_passes += 1
        logger.debug("lockstep pass %d: %d fit(s)", self.n_passes, len(requests))
        total = None
        if self._try_groups:
            self._groups, self._try_groups = WorkerGroups.start(self.bs), False
        if self._groups is not None:
            try:
                total, _ = self._groups.run(combined_pass, requests=tuple(requests))
            except GroupsUnavailable as exc:
                logger.warning("per-worker passes failed twice (%s); one task per block", exc)
                self._groups = None
                requests = [(m, f, True, bc) for m, f, _, bc in requests]
        if total is None:
            total = self._by_block(tuple(requests))
        return {r[0]: part for r, part in zip(requests, total.parts, strict=True)}

    def _by_block(self, requests: tuple) -> PerFit:
        # each request carries its own ``fresh``: the kept states are always handed over
        stateful = any(r[0] in self._stateful for r in requests)
        return self._tasks.run(
            combined_pass, {"requests": requests}, stateful=stateful, fresh=False
        )

    def close(self) -> None:
        """Free the actors and per-block states (call once every fit has left)."""
        self._tasks.release()
        if self._groups is not None:
            self._groups.close()
            self._groups = None


class SharedEStep(EStep):
    """An :class:`.estep.EStep` whose passes run as a member of a :class:`Lockstep`."""

    def __init__(self, member: Member, bs: BlockSet, reference: np.ndarray, bounds: bool) -> None:
        super().__init__(bs, reference, bounds, groups=False)
        self.member = member

    def _pass(self, C: np.ndarray, kind: str, func: PassFunc, bc: dict) -> tuple[str, tuple]:
        # the same ``fresh`` as EStep's own per-worker pass
        return kind, self.member.run(func, self.plan.fresh(kind), **bc)

    def close(self) -> None:
        """Leave the lockstep (the others stop waiting for this fit)."""
        try:
            super().close()
        finally:
            self.member.leave()
