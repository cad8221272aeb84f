"""Bounds-pruned Lloyd E-step (Yinyang's grouped bounds, with Hamerly's bound) that reproduces
the plain kernel exactly.

The centres are split once into ``t`` groups (:func:`n_groups`, about ``k / 10``; one group
for small ``k``) by a deterministic k-means of the first centres (:func:`centre_groups`). Per
row the state keeps its label ``a``, an upper bound ``u`` on ``||x - c_a||`` (float32, rounded
up) and, per group ``g``, a lower bound ``l_g`` on the distance to every centre of ``g`` other
than ``a`` (float32, rounded down); per segment of rows it keeps each centre's partial sums
(:mod:`.segments`). Each iteration (centres ``C``, the state built against ``C_prev``):

* ``l_g`` loses the largest move of the centres of ``g`` (triangle inequality; the assigned
  centre's own move does not count), and Hamerly's bound ``2 s(a) - ||x - c_a||`` (``s(a)``:
  half the distance from ``c_a`` to its nearest other centre) is taken if larger. The moves
  are not subtracted row by row: the state stores each bound plus the group's cumulative move
  at the time it was computed (:attr:`BoundsStep.cum`, per group, and per centre for the
  assigned centre's own group), and a pass reads it less today's cumulative move, so a row
  whose bounds hold costs reads only (no write). ``u`` gains the assigned centre's own
  cumulative move the same way;
* a row keeps ``a`` without being read when ``min_g l_g^2 - u^2 > 2 E`` (Hamerly's bound
  with ``u`` for ``||x - c_a||``). Otherwise its exact distance to ``c_a`` is computed (its
  row is read, asked for ahead: :mod:`.prefetch`), becomes its new ``u``, and the test is
  repeated with it. Groups of centres that move little keep their bounds when one centre far
  away moves a lot: many more rows are settled than with Hamerly's single bound;
* a segment of rows none of which changed label keeps its partial sums from the last pass,
  bit for bit; in the others, the sums of the centres that lost or gained a row are added
  again from their rows (:func:`.segments.resum`). A pass reads the rows whose bounds fail
  and the rows of the centres whose membership changed, nothing else.

Exactness. The plain kernel (:func:`kernels.lloyd._assign_kernel`) takes the argmin of
``v_j = bias_j - 2 x.(c_j - mu)`` with the product in the data's dtype, so its ``v_j`` differ
from the true ``||x - c_j||^2 - ||x - mu||^2`` by rounding. ``E`` bounds that error for a row:
``E = 2 (d + 2) eps_dtype ||x|| R + 64 d eps_64 (||x|| + R + ||mu||)^2`` with
``R = max_j ||c_j - mu||``: the product (any summation order, FMA or not) is off by at most
``d eps / 2 ||x|| ||c_j - mu||`` (plus ``eps / 2`` of the same for rounding ``c_j - mu`` to
the dtype), doubled in ``v_j``; the float64 terms (``bias_j``, the subtraction) are far below
the second term. The constants leave a factor of 2 over the worst case. ``||x||`` is bounded
by ``u + ||c_a||`` (no read of the row).
When the true gap exceeds ``2 E`` the plain kernel's argmin is ``a`` whatever its rounding,
so skipping is safe; exact ties (duplicates, coincident centres) are never skipped. A row
that is not skipped needs only the centres of the groups whose own bound fails the same test
(Yinyang's local filter): every other centre is farther than ``a`` by more than ``2 E``.
When a block's failing groups hold few of its distances (:data:`LOCAL_SHARE`), those are
computed in float64 (per group, one product of the rows that need it) with ``a``'s, and the
best is accepted under the same rule as below; the failing groups' bounds are rebuilt from
their values, the others kept (the old label's group, if kept, now also bounds the old
label: its exact distance enters it). Otherwise the rows get all their distances from a
product: the whole 1,024-row block's product
computed exactly as the plain kernel does (then the argmin is the plain kernel's, bit for
bit), or, when few rows of a block need it, a float64 product of just those rows (gathered),
centred on ``mu`` (error far below ``E``), accepted only when its best and second-best values
differ by more than ``2 E`` plus its own error bound (else the block's plain product decides;
a block whose near-ties keep needing it goes straight to the plain product). Their group
bounds are then the group minima less ``2 E``. With float64 data and the float32 screen on
(:mod:`.screen`), a block recomputed whole (a full pass, or more than
:data:`SCREENED_FULL_SHARE` of its rows failing their first test) takes the screen's values
instead when the screen settles all its rows, the bounds less the screen's error
(:mod:`.bounds_full`). All bound arithmetic is in float64 and padded
the safe way (relative ``1e-9``, plus an absolute term at the row's scale), then rounded down
to float32. Where the plain kernel's own rounding is coarse (float32 data far from the
origin, ``E`` large), near-ties are common, most blocks take the plain product and little is
saved. Partial sums are accumulated by segments, each in row order, with the plain kernel's
statements, so the per-block partials, hence the centres, are bit-identical to the plain
path's. The exact inertia comes only from a full pass (a pruned pass does not read every row;
the iterations take theirs from the sums, :func:`kernels.lloyd.inertia_shift`).

An E-step may update the state in place (``inplace=True``) and still be run twice on the
same state (a retried task): the state records the cumulative drifts it was written against
(:attr:`BoundsState.cum`), and a step built on other ones (:attr:`BoundsStep.base`)
recomputes the block instead of reading them.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from .bounds_groups import centre_groups, n_groups, pairwise_sq
from .bounds_kernel import bounds_kernel
from .lloyd import CentreSet
from .segments import SEGMENT_BYTES_PER_ROW, segment_rows

__all__ = [
    "BoundsState", "BoundsStep", "bounds_partials", "bounds_step", "centre_groups", "n_groups",
]

#: relative padding of every bound computed in float64 (far above its rounding error)
PAD = 1e-9
#: per dtype, the largest share of a block's row-centre distances for which the rows whose
#: bounds fail compute only the assigned centre's and the failing groups' distances
#: (Yinyang's local filter, a product per group) rather than every distance
LOCAL_SHARE = {"float64": 0.25, "float32": 0.12}
#: the share of a tile's rows whose bounds fail above which the tile is recomputed whole
#: from the float32 screen (float64 data, the screen on): every bound rebuilt tight
SCREENED_FULL_SHARE = 0.3


class BoundsState:
    """Per-row state of one block, kept on the worker between iterations: the label (int32),
    an upper bound on the distance to it (float32), one lower bound per group of centres
    (float32), and every segment's partial sums (:mod:`.segments`, at most 8 bytes a row):
    ``16 + 4 t`` bytes a row (:meth:`bytes_per_row`)."""

    __slots__ = ("cum", "groups", "labels", "lower", "seg_sums", "seg_w", "tries", "upper")

    def __init__(
        self,
        labels: np.ndarray,
        lower: np.ndarray,
        tries: np.ndarray,
        groups: np.ndarray,
        cum: tuple | None = None,
        upper: np.ndarray | None = None,
        seg_sums: np.ndarray | None = None,
        seg_w: np.ndarray | None = None,
    ) -> None:
        self.labels = labels
        #: per group, the lower bound plus the cumulative drift of :attr:`cum` it is read
        #: against (rounded down; see :meth:`bounds`)
        self.lower = lower
        #: the upper bound on the distance to the assigned centre, less that centre's
        #: cumulative drift (rounded up; see :meth:`upper_bounds`)
        self.upper = np.zeros(len(labels), np.float32) if upper is None else upper
        #: per segment of rows, the weighted sums and weights of each centre's rows
        self.seg_sums = seg_sums
        self.seg_w = seg_w
        #: decayed counts of partial products tried and sent back to the plain product
        self.tries = tries
        #: the grouping the bounds refer to
        self.groups = groups
        #: the cumulative drifts ``(per group, per centre of the others in its group, per
        #: centre of its own)`` the stored bounds are relative to (:attr:`BoundsStep.cum` of
        #: the pass that last wrote them)
        self.cum = cum

    def bounds(self) -> np.ndarray:
        """The lower bounds themselves (float64, ``(n, t)``): per row and group, a lower
        bound on the distance to every centre of the group but the row's own, at the centres
        of the pass that last wrote the state."""
        gcum, acum = self.cum[0], self.cum[1]
        out = self.lower.astype(np.float64) - gcum
        own = self.groups[self.labels]
        rows = np.arange(len(self.labels))
        out[rows, own] = self.lower[rows, own].astype(np.float64) - acum[self.labels]
        return out

    def upper_bounds(self) -> np.ndarray:
        """The upper bounds themselves (float64, ``(n,)``): per row, an upper bound on the
        distance to its assigned centre, at the centres of the pass that last wrote the
        state."""
        return self.upper.astype(np.float64) + self.cum[2][self.labels]

    def copy(self) -> BoundsState:
        """An independent copy (the kernel updates a state in place)."""
        return BoundsState(
            self.labels.copy(), self.lower.copy(), self.tries.copy(), self.groups, self.cum,
            self.upper.copy(), None if self.seg_sums is None else self.seg_sums.copy(),
            None if self.seg_w is None else self.seg_w.copy(),
        )

    @staticmethod
    def bytes_per_row(k: int) -> int:
        """Bytes a row of the state takes for ``k`` clusters."""
        return 8 + 4 * n_groups(k) + SEGMENT_BYTES_PER_ROW


class BoundsStep:
    """What one iteration broadcasts to the blocks (small: O(k d)).

    ``full``: recompute every row (no usable state: first iteration, or after an empty
    cluster was re-seeded). ``groups``: the group of every centre (kept for the whole run).
    """

    __slots__ = (
        "base", "centre_sq", "cs", "cum", "drift", "full", "grouped", "groups", "p",
        "reference", "shifted64", "shifted64_t",
    )

    def __init__(
        self,
        cs: CentreSet,
        reference: np.ndarray,
        groups: np.ndarray,
        p: tuple,
        full: bool,
        drift: np.ndarray,
        base: tuple,
        cum: tuple,
    ) -> None:
        self.cs = cs
        self.reference = reference
        self.groups = groups
        shifted = cs.centres.astype(np.float64) - reference
        self.shifted64 = np.ascontiguousarray(shifted)
        self.shifted64_t = np.ascontiguousarray(shifted.T)
        self.centre_sq = np.einsum("ij,ij->i", shifted, shifted)
        #: for the local filter: per group (in member order) its centred centres as one
        #: (d, size) block, their squared norms, and every centre's member position
        members, gstart = p[9], p[10]
        self.grouped = (
            np.concatenate([shifted[members[a:b]].T.ravel() for a, b in pairwise(gstart)]),
            self.centre_sq[members],
            np.argsort(members, kind="stable"),
        )
        #: (half_sep, cnorm, group_of, gcum, acum, cpad, margin, margin64, radius, members,
        #: gstart, ocum): see :func:`bounds_step` and the kernel
        self.p = p
        self.full = full
        #: how far every centre moved since the state's centres (padded up; 0: none)
        self.drift = drift
        #: the cumulative drifts ``(per group: the largest move in the group, per centre: the
        #: largest move of the other centres of its group, per centre: its own move)``, summed
        #: (rounded up) over the passes since the last full one: ``base`` before this step's
        #: drift (a state must have been written against it, else its block is recomputed),
        #: ``cum`` after it
        self.base = base
        self.cum = cum

    def __reduce__(self) -> tuple:
        # pickled as its inputs (the centres once, not in six forms), rebuilt where it lands
        args = (self.cs, self.reference, self.groups, self.p, self.full, self.drift, self.base)
        return (BoundsStep, (*args, self.cum))

    def move_ratio(self, since: np.ndarray | None = None) -> float:
        """How far the centres moved (since the state's centres, or since ``since``) against
        their spacing: the median over the groups of the largest move in the group (a
        group's bounds lose that much), over the median half distance from a centre to its
        nearest other centre (0 when none moved; inf when the centres coincide). The bounds
        settle few rows while this is large."""
        if since is None:
            drift = self.drift
        else:
            diff = self.cs.centres.astype(np.float64) - np.asarray(since, dtype=np.float64)
            drift = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        gmax = np.zeros(int(self.groups.max()) + 1)
        np.maximum.at(gmax, self.groups, drift)
        top = float(np.median(gmax))
        if top == 0.0:
            return 0.0
        half_sep = self.p[0]
        finite = half_sep[np.isfinite(half_sep)]
        spacing = float(np.median(finite)) if finite.size else np.inf
        return top / spacing if spacing > 0.0 else np.inf


def _group_drifts(drift: np.ndarray, groups: np.ndarray) -> tuple:
    # per group the largest drift; per centre the largest drift of the other centres of its
    # group (the group's second largest for the centre that moved most)
    t = int(groups.max()) + 1
    gmax = np.zeros(t)
    garg = np.full(t, -1, dtype=np.int64)
    gsecond = np.zeros(t)
    for j in np.argsort(-drift, kind="stable"):
        g = groups[j]
        if garg[g] < 0:
            gmax[g], garg[g] = drift[j], j
        elif gsecond[g] == 0.0:
            gsecond[g] = drift[j]
    others = gmax[groups]
    own = garg[groups] == np.arange(len(groups))
    others[own] = gsecond[groups[own]]
    return gmax, others


def _cumulative(base: tuple, drift: np.ndarray, groups: np.ndarray) -> tuple:
    # base + this step's drifts, rounded up (every sum an upper bound of the exact one)
    gmax, others = _group_drifts(drift, groups)
    return (
        np.nextafter(base[0] + gmax, np.inf),
        np.nextafter(base[1] + others, np.inf),
        np.nextafter(base[2] + drift, np.inf),
    )


def bounds_step(
    C: np.ndarray,
    C_prev: np.ndarray | None,
    reference: np.ndarray,
    full: bool,
    groups: np.ndarray | None = None,
    base: tuple | None = None,
) -> BoundsStep:
    """The broadcast of an iteration with centres ``C`` whose state was built against
    ``C_prev`` (None, or ``full``: every row is recomputed). ``groups``: the previous step's
    (:attr:`BoundsStep.groups`; None: group ``C``; blocks whose state refers to another
    grouping are recomputed). ``base``: the :attr:`BoundsStep.cum` of the step that last
    wrote the states (None: a full pass wrote them; blocks whose state was written against
    other cumulative drifts are recomputed)."""
    cs = CentreSet(C, reference)
    ref = np.asarray(reference, dtype=np.float64)
    c64 = C.astype(np.float64)
    k, d = C.shape
    if groups is None:
        groups = centre_groups(C, n_groups(k))
    if C_prev is None:
        full = True
        drift = np.zeros(k)
    else:
        drift = np.sqrt(((c64 - C_prev.astype(np.float64)) ** 2).sum(axis=1)) * (1 + PAD)
    if k > 1:
        cc = np.sqrt(np.maximum(pairwise_sq(c64, c64), 0.0))
        np.fill_diagonal(cc, np.inf)
        # the differences round at the centres' scale: pad down by a relative and an absolute term
        scale = float(np.abs(c64).max(initial=0.0))
        half_sep = np.maximum(0.5 * cc.min(axis=1) * (1 - PAD) - PAD * scale, 0.0)
    else:
        half_sep = np.full(1, np.inf)
    r = float(np.sqrt(((c64 - ref) ** 2).sum(axis=1)).max())
    margin = 2.0 * (d + 2) * float(np.finfo(C.dtype).eps) * r * (1 + PAD)
    margin64 = 64.0 * d * float(np.finfo(np.float64).eps)
    radius = r + float(np.sqrt(ref @ ref))
    #: centre norms, rounded up: ``||x|| <= ||x - c_a|| + ||c_a||`` for the error bounds
    cnorm = np.sqrt(np.einsum("ij,ij->i", c64, c64)) * (1 + PAD)
    members = np.argsort(groups, kind="stable")
    gstart = np.searchsorted(groups[members], np.arange(int(groups.max()) + 2))
    t = int(groups.max()) + 1
    zero = (np.zeros(t), np.zeros(k), np.zeros(k))  # what a full pass writes against
    if full:
        base = cum = zero
    else:
        base = zero if base is None else base
        cum = _cumulative(base, drift, groups)
    # the read's absolute pad covers the rounding of a bound less a cumulative drift
    cpad = float(max(c.max(initial=0.0) for c in cum))
    p = (half_sep, cnorm, groups, cum[0], cum[1], cpad, margin, margin64, radius, members,
         gstart, cum[2])
    return BoundsStep(cs, ref, groups, p, full, drift, base, cum)


def _same_cum(a: tuple | None, b: tuple) -> bool:
    return a is not None and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def bounds_partials(
    X: np.ndarray,
    w: np.ndarray | None,
    step: BoundsStep,
    state: BoundsState | None,
    inplace: bool = False,
    local: bool = True,
) -> tuple[np.ndarray, np.ndarray, float, int, BoundsState]:
    """One pruned E-step on a block: the plain :func:`lloyd_partials` results, the number of
    row-centre distances computed by products, and the new state (``state`` is updated in
    place and returned when ``inplace``, else left unchanged). ``local=False``: rows whose
    bounds fail compute every distance (no local filter; same results, for comparisons).

    The inertia is exact (the plain kernel's) in a full pass, where every row is recomputed;
    a pruned pass returns 0 in its place, as the plain kernel without ``exact`` does (rows
    whose bounds hold are not read: :func:`kernels.lloyd.inertia_shift` gives the
    iteration's inertia from the sums).
    """
    n = X.shape[0]
    k, d = step.cs.centres.shape
    t = int(step.groups.max()) + 1
    seg = segment_rows(k, d)
    shape = (-(-n // seg), k, d)
    full = (
        step.full
        or state is None
        or state.lower.shape != (n, t)
        or state.seg_sums is None
        or state.seg_sums.shape != shape
        or not np.array_equal(state.groups, step.groups)
        or not _same_cum(state.cum, step.base)
    )
    if full and inplace and state is not None and state.lower.shape == (n, t):
        # every row is recomputed: the arrays are reused (no allocation per full pass)
        state.groups = step.groups
        state.tries[:] = 0.0
        if state.seg_sums is None or state.seg_sums.shape != shape:
            state.seg_sums, state.seg_w = np.zeros(shape), np.zeros(shape[:2])
    elif full:
        state = BoundsState(
            np.zeros(n, np.int32), np.zeros((n, t), np.float32), np.zeros(2), step.groups,
            None, np.zeros(n, np.float32), np.zeros(shape), np.zeros(shape[:2]),
        )
    elif not inplace:
        state = state.copy()
        state.groups = step.groups
    # the stored bounds are read against step.cum (a full pass: stored against it)
    state.cum = step.cum
    state.tries *= 0.5
    sums = np.zeros((k, d), dtype=np.float64)
    wsum = np.zeros(k, dtype=np.float64)
    wa = np.ones(0) if w is None else np.ascontiguousarray(w, dtype=np.float64)
    # a partial float64 product of some rows costs about what the plain product of as many
    # rows costs in float64, twice that in float32
    plain_share = 0.75 if X.dtype == np.float64 else 0.4
    local_share = LOCAL_SHARE.get(X.dtype.name, LOCAL_SHARE["float64"]) if local else -1.0
    # a tile recomputed whole from the float32 screen (:mod:`.bounds_full`) costs about
    # what this share of its rows costs when their bounds fail (row by row)
    full_share = SCREENED_FULL_SHARE if step.cs.screen[0] else 2.0
    shares = (plain_share, local_share, full_share)
    q = (step.cs.shifted_t, step.cs.bias, step.cs.centres, step.reference, step.shifted64_t,
         step.centre_sq, step.shifted64, *step.grouped, step.cs.screen)
    st = (state.labels, state.lower, state.upper, state.seg_sums, state.seg_w, state.tries)
    inertia, computed = bounds_kernel(X, wa, w is not None, st, sums, wsum, full, seg, shares,
                                      step.p, q)
    return sums, wsum, float(inertia), int(computed), state
