"""The per-block passes of a Lloyd E-step: ``func(block, state, **broadcast) -> (partial,
new state)``, run on the worker that holds the block (by :mod:`.groups` or one task per
block, :class:`.estep.TaskStates`).

A partial is ``(sums, weights, inertia, n_computed)``: the fused plain kernel
(:func:`kernels.lloyd.lloyd_partials`) or the pruned one (:func:`kernels.bounds.bounds_partials`:
Yinyang's grouped bounds with Hamerly's), whose per-row state (label, upper and lower bounds,
segment sums: ``16 + 4 t`` bytes a row for ``t`` groups of centres) stays next to its block
between iterations. Both give bit-identical partials, hence plain Lloyd's centres,
assignments, ``n_iter`` and inertia.
"""

from __future__ import annotations

from ..kernels import bounds as bkernels
from ..kernels import lloyd as kernels
from .blocks import Block
from .groups import PassFunc

__all__ = ["PLAIN_PASSES", "bounds_pass", "fusable", "keep_pass", "plain_pass", "plain_passes"]


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
