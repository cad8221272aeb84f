"""Bounds-pruned Lloyd passes: per-row bounds kept on the workers next to each block.

Each iteration is one task per block, ``bounds_partials(block, previous, step)``: it takes the
block's previous result (a handle: the state stays where it was computed) and returns
``(sums, weights, inertia, n_computed, new_state)``; a second, tiny task per block brings back
the partials, the state stays. The previous results are released once the new ones exist.
Streamed blocks work the same way: the block is read again, the state (``4 + 4 t`` bytes a row,
``t`` groups of centres) waits on the worker that computed it. The kernel updates the state in
place, so keeping the previous result until the new one exists costs no copy.

The partials are bit-identical to :func:`kernels.lloyd.lloyd_partials` (see
:mod:`kmeans_dask.kernels.bounds`), so the loop in :mod:`.lloyd` gives plain Lloyd's
centres, assignments, ``n_iter`` and inertia.
"""

from __future__ import annotations

import numpy as np

from ..kernels import bounds as kernels
from .blocks import Block, BlockSet

__all__ = ["BoundedPasses"]


def _step(block: Block, previous: tuple | None, step: kernels.BoundsStep) -> tuple:
    state = None if previous is None else previous[4]
    # in place: the previous result is released once this one exists, and a rerun on the
    # updated state stays exact (its bounds only loosen)
    return kernels.bounds_partials(block.X, block.w, step, state, inplace=True)


def _partials(result: tuple) -> tuple:
    return result[:4]


class BoundedPasses:
    """The E-steps of one Lloyd run with bounds kept between them (inputs already validated).

    Call :meth:`partials` once per iteration with that iteration's centres, :meth:`reset`
    when the centres were changed by more than a mean update (empty-cluster relocation:
    the next iteration recomputes every row), and :meth:`close` at the end.
    """

    def __init__(self, bs: BlockSet, reference: np.ndarray) -> None:
        self.bs = bs
        self.reference = reference
        self._results: list | None = None
        self._centres: np.ndarray | None = None
        self._groups: np.ndarray | None = None
        self._full = True

    def partials(self, C: np.ndarray) -> tuple[list, int]:
        """Per-block ``(sums, weights, inertia)`` of the assignment to ``C``, and the number of
        row-centre distances the bounds spared (against ``n_samples * k``)."""
        bs = self.bs
        step = kernels.bounds_step(C, self._centres, self.reference, self._full, self._groups)
        self._groups = step.groups  # the grouping of the centres stays for the whole run
        previous = self._results if self._results is not None else [None] * bs.n_blocks
        results = bs.map_keep(_step, previous, step=step)
        parts = bs.gather(bs.map_values(_partials, results))
        if self._results is not None:
            bs.release(self._results)
        self._results = results
        self._centres = C
        self._full = False
        computed = sum(p[3] for p in parts)
        skipped = bs.n_samples * C.shape[0] - computed
        return [p[:3] for p in parts], int(skipped)

    def reset(self) -> None:
        """Recompute every row in the next iteration."""
        self._full = True

    def close(self) -> None:
        """Free the bounds held on the workers."""
        if self._results is not None:
            self.bs.release(self._results)
        self._results = None
