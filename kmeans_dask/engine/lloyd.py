"""Lloyd iterations as map-reduce over persisted row blocks.

Per iteration: the centres (small) go to every block; each block returns
``(sums, weights)`` from one fused compiled pass (:func:`kernels.lloyd_partials`; the exact
distances, for the inertia, only in the first iteration: :class:`.estep.EStep`),
added up on the workers along a fixed tree over the blocks (one call per worker on a
cluster: :mod:`.estep`); the caller completes the sum and divides. Empty clusters take
the rows farthest from their centre (scikit-learn's rule), found by an extra pass only in
the iterations that need it.
Convergence: the squared centre shift is at most ``tol_abs`` (scikit-learn's meaning, with
``tol_abs = tol * mean feature variance``), or ``max_iter`` iterations.

With ``bounds=True`` the E-steps are pruned by per-row bounds kept on the workers
(:class:`.estep.EStep`, Hamerly's algorithm); their partials are bit-identical to the
plain ones, so everything else (the M-step, relocation, convergence) is shared and the results
are plain Lloyd's.

Every iteration is a DEBUG record of the ``kmeans_dask.lloyd`` logger (inertia, centre shift)
and advances a :func:`kmeans_dask.progress.task` (``Lloyd K=k``, up to ``max_iter``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import progress
from ..kernels import lloyd as kernels
from .blocks import Block, BlockSet
from .estep import EStep
from .lockstep import Lockstep

__all__ = ["IterationStats", "LloydResult", "assign_blocks", "lloyd"]

# a stable public name: users and benchmarks follow the iteration progress through it
logger = logging.getLogger("kmeans_dask.lloyd")


@dataclass(frozen=True)
class IterationStats:
    """One Lloyd iteration: the inertia of the assignment to the centres it started from
    (summed from exact distances in the first iteration; later ones from their partial sums
    and the first's, :func:`kmeans_dask.kernels.lloyd.inertia_shift`: the same up to the
    rounding of those sums), and the squared shift of the centres it produced.
    ``n_skipped``: row-centre distances the bounds spared against plain Lloyd's
    ``n_samples * k`` (0 without bounds; negative when near-ties made blocks compute more
    than plain Lloyd)."""

    iteration: int
    inertia: float
    center_shift: float
    n_empty: int
    seconds: float
    n_skipped: int = 0


@dataclass
class LloydResult:
    """Centres after Lloyd, with per-iteration history."""

    centres: np.ndarray
    n_iter: int
    converged: bool
    history: list[IterationStats] = field(default_factory=list)


def _farthest(block: Block, offset: int, cs: kernels.CentreSet, m: int) -> tuple:
    return kernels.farthest_points(block.X, cs, block.w, offset, m)


def _labels(block: Block, cs: kernels.CentreSet) -> tuple[np.ndarray, float]:
    labels, mind, _ = kernels.assign(block.X, cs, block.w)
    return labels, float(mind.sum() if block.w is None else mind @ block.w)


def _first(result: tuple) -> np.ndarray:
    return result[0]


def _second(result: tuple) -> float:
    return result[1]


def _global_farthest(bs: BlockSet, cs: kernels.CentreSet, m: int) -> tuple:
    """The ``m`` rows farthest from their centre over all blocks (deterministic order)."""
    return kernels.select_farthest(bs.map(_farthest, bs.offsets, cs=cs, m=m), m)


def lloyd(
    bs: BlockSet,
    centres: np.ndarray,
    *,
    max_iter: int,
    tol_abs: float,
    reference: np.ndarray,
    callback: Callable[[IterationStats], None] | None = None,
    bounds: bool = False,
    lockstep: Lockstep | None = None,
) -> LloydResult:
    """Run Lloyd's algorithm from ``centres`` (inputs already validated).

    Parameters
    ----------
    bs : BlockSet
        Persisted data.
    centres : ndarray of shape (k, d)
        Initial centres, in the data's dtype.
    max_iter : int
        Maximum number of iterations.
    tol_abs : float
        Stop when the sum of squared centre shifts is at most this.
    reference : ndarray of shape (d,)
        Reference point of the shifted distance products (the data mean).
    callback : callable, optional
        Called with each iteration's :class:`IterationStats` (progress reporting).
    bounds : bool
        Prune the E-steps with per-row bounds kept on the workers (same results).
    lockstep : Lockstep, optional
        Share each E-step's pass with the other fits of a K sweep (same results).
    """
    C = np.ascontiguousarray(centres, dtype=bs.dtype)
    if lockstep is None:
        estep = EStep(bs, reference, bounds)
    else:  # a member of a sweep's lockstep from here until close()
        estep = lockstep.estep(bs, reference, bounds)
    try:
        with progress.task(f"Lloyd K={C.shape[0]}", total=max_iter) as bar:
            return _iterate(bs, C, max_iter, tol_abs, reference, callback, bar, estep)
    finally:
        estep.close()


def _iterate(
    bs: BlockSet,
    C: np.ndarray,
    max_iter: int,
    tol_abs: float,
    reference: np.ndarray,
    callback: Callable[[IterationStats], None] | None,
    bar: progress.ProgressTask,
    estep: EStep,
) -> LloydResult:
    history: list[IterationStats] = []

    def report(inertia: float, shift: float, n_empty: int, seconds: float, skipped: int) -> None:
        stats = IterationStats(len(history) + 1, inertia, shift, n_empty, seconds, skipped)
        history.append(stats)
        logger.debug(
            "Lloyd iteration %d: inertia %.6g, centre shift %.3g%s%s",
            stats.iteration,
            inertia,
            shift,
            f", {n_empty} empty cluster(s) re-seeded" if n_empty else "",
            f", bounds spared {skipped / (bs.n_samples * C.shape[0]):.0%} of the distances"
            if estep.bounds
            else "",
            extra={"seconds": seconds},  # the iteration's own time (log records come per batch)
        )
        bar.advance(status=f"inertia {inertia:.6g}")
        if callback is not None:
            callback(stats)

    converged = False
    while len(history) < max_iter and not converged:
        # several iterations when a worker leads them (:mod:`.drive`), else one
        batch = estep.iterate(C, max_iter - len(history), tol_abs)
        for inertia, shift, seconds, skipped in batch.records:
            report(inertia, shift, 0, seconds, skipped)
        C, converged = batch.centres, batch.converged
        if batch.pending is not None:  # an empty cluster: its relocation needs a pass
            sums, wsum, inertia, skipped, seconds = batch.pending
            t0 = time.perf_counter()
            cs = kernels.CentreSet(C, reference)
            C, shift, n_empty = kernels.m_step(
                C, sums, wsum, lambda m, cs=cs: _global_farthest(bs, cs, m)
            )
            estep.reset()  # the bounds stay valid, but a relocation moves centres far
            report(inertia, shift, n_empty, seconds + time.perf_counter() - t0, skipped)
            converged = shift <= tol_abs
    return LloydResult(C, len(history), converged, history)


def assign_blocks(bs: BlockSet, centres: np.ndarray, reference: np.ndarray) -> tuple[list, float]:
    """Labels of every row (kept on the workers, one handle per block) and the exact inertia."""
    cs = kernels.CentreSet(np.ascontiguousarray(centres, dtype=bs.dtype), reference)
    both = bs.map_keep(_labels, cs=cs)
    inertia = float(sum(bs.gather(bs.map_values(_second, both))))
    labels = bs.map_values(_first, both)
    bs.release(both)
    return labels, inertia
