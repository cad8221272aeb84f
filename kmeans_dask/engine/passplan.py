"""Which pass each Lloyd iteration runs, and what its partials mean: the E-step's decisions,
apart from where the passes run.

Adaptive: pruning pays only once the centres move little against their spacing (on
overlapping data the first iterations move every centre and settle no row, and a pruned pass
that settles nothing costs more than a plain one). So with bounds, every iteration picks one
of three passes from the centres alone (:meth:`PassPlan.pass_kind`, deterministic):
``"pruned"`` while the centres moved at most :func:`switch_ratio` times their median half
spacing since the state's centres, else ``"full"`` (every row recomputed and the bounds
rebuilt) once the last iteration's move is that small, else ``"plain"`` (the plain kernel; the
state, if any, is kept as it is and stays valid: the next pruned pass takes the centres' whole
move since it was built).

A :class:`PassPlan` holds only small arrays (centres, drifts, groups) and pickles: the
client keeps it, or sends it to the worker that leads a batch of iterations (:mod:`.drive`)
and takes back the updated copy.
"""

from __future__ import annotations

import dask
import numpy as np

from ..kernels import bounds as bkernels
from ..kernels import lloyd as kernels
from .passes import bounds_pass, keep_pass, plain_pass

__all__ = ["SWITCH_KEY", "SWITCH_RATIO", "PassPlan", "switch_ratio"]

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
    return _ratio(dask.config.get(SWITCH_KEY, None), dtype)


def _ratio(setting: float | None, dtype: np.dtype) -> float:
    if setting is not None:
        return float(setting)
    return SWITCH_RATIO.get(np.dtype(dtype).name, SWITCH_RATIO["float64"])


class PassPlan:
    """The decisions of one Lloyd run's E-steps: :meth:`choose` the pass for the centres,
    run it anywhere, then :meth:`account` for its total partial.

    Parameters
    ----------
    reference : ndarray of shape (d,)
        Reference point of the shifted distance products (the data mean).
    bounds : bool
        Whether the run may prune with per-row bounds.
    n_samples : int
        Rows of the data (for the count of distances spared).
    """

    def __init__(self, reference: np.ndarray, bounds: bool, n_samples: int) -> None:
        self.reference = reference
        self.bounds = bounds
        self.n_samples = n_samples
        self.full = True  # no usable state: the next bounds pass rebuilds every row's
        self._centres: np.ndarray | None = None  # the centres the states were built against
        self._last: np.ndarray | None = None  # the previous iteration's centres
        self._groups: np.ndarray | None = None  # the centres' Yinyang groups, kept for the run
        self._cum: tuple | None = None  # the cumulative drifts the states were written against
        self._step: bkernels.BoundsStep | None = None  # the last bounds pass's broadcast
        self._ratio: float | None = None  # switch_ratio(k, dtype), set by the first choice
        # read here, on the client: the choices may be taken on a worker (:mod:`.drive`)
        self._setting = dask.config.get(SWITCH_KEY, None)
        # the data's weighted sum of squares about the reference, from the first pass's exact
        # inertia: later passes skip the exact distances (:func:`kernels.inertia_shift`)
        self._sum_sq: float | None = None
        #: the kind of every pass so far ("plain", "full" or "pruned")
        self.kinds: list[str] = []

    def choose(self, C: np.ndarray) -> tuple[str, object, dict]:
        """``(kind, per-block pass, broadcast)`` of the pass for centres ``C``."""
        exact = self._sum_sq is None  # only the first pass needs the exact distances
        if not self.bounds:
            cs = kernels.CentreSet(C, self.reference)
            return "plain", plain_pass, {"cs": cs, "exact": exact}
        step = bkernels.bounds_step(
            C, self._centres, self.reference, self.full, self._groups, self._cum
        )
        self._groups = step.groups
        if self._ratio is None:
            self._ratio = _ratio(self._setting, C.dtype)
        kind = self.pass_kind(step, C)
        if kind == "plain":
            return kind, keep_pass, {"cs": step.cs, "exact": exact}
        if kind == "full" and not step.full:
            # every row recomputed: the bounds are written against zero cumulative drifts
            step = bkernels.bounds_step(C, self._centres, self.reference, True, self._groups)
        self._step = step
        return kind, bounds_pass, {"step": step}

    def fresh(self, kind: str) -> bool:
        """Whether a pass of ``kind`` starts without the kept per-block states."""
        return self.full and kind != "plain"

    def pass_kind(self, step: bkernels.BoundsStep, C: np.ndarray) -> str:
        """``"pruned"``, ``"full"`` or ``"plain"`` for centres ``C`` (``step``: their
        broadcast against the states' centres; see the module docstring)."""
        if not self.full and step.move_ratio() <= self._ratio:
            return "pruned"
        moved = np.inf if self._last is None else step.move_ratio(self._last)
        return "full" if moved <= self._ratio else "plain"

    def account(self, C: np.ndarray, kind: str, total: tuple) -> tuple:
        """``(sums, weights, inertia, n_skipped)`` from the total partial of a ``kind`` pass
        to ``C``; ``n_skipped`` counts the row-centre distances the bounds spared against
        ``n_samples * k``.

        The first pass's inertia is summed row by row from exact distances; later ones are
        that pass's sum of squares plus :func:`kernels.inertia_shift` of their sums (the
        same for plain and pruned passes, whose sums are bit-identical)."""
        self.kinds.append(kind)
        if kind != "plain":
            self._centres, self.full, self._cum = C, False, self._step.cum
        self._last = C
        sums, wsum, inertia, computed = total
        shift = kernels.inertia_shift(C, self.reference, sums, wsum)
        if self._sum_sq is None:
            self._sum_sq = float(inertia) - shift
        else:
            inertia = self._sum_sq + shift
        return sums, wsum, float(inertia), int(self.n_samples * C.shape[0] - computed)

    def reset(self) -> None:
        """Recompute every row in the next bounds pass."""
        self.full = True
