"""Bounds-pruned Lloyd E-step (Hamerly's algorithm) that reproduces the plain kernel exactly.

Per row the state keeps its label ``a`` and a lower bound ``l`` on the distance to the
second-closest centre. Each iteration (centres ``C``, the state built against ``C_prev``):

* ``l`` loses the largest move of any other centre (triangle inequality), and Hamerly's
  second bound ``2 s(a) - ||x - c_a||`` (``s(a)``: half the distance from ``c_a`` to its
  nearest other centre) is taken if larger;
* the exact distance to the assigned centre ``||x - c_a||`` is computed for every row (``d``
  operations: it is needed anyway for the exact inertia, and it is the tightest upper bound);
* a row keeps ``a`` without computing its other distances when ``l^2 - ||x - c_a||^2 > 2 E``.

Exactness. The plain kernel (:func:`kernels.lloyd._assign_kernel`) takes the argmin of
``v_j = bias_j - 2 x.(c_j - mu)`` with the product in the data's dtype, so its ``v_j`` differ
from the true ``||x - c_j||^2 - ||x - mu||^2`` by rounding. ``E`` bounds that error for a row:
``E = 2 (d + 2) eps_dtype ||x|| R + 64 d eps_64 (||x|| + R + ||mu||)^2`` with
``R = max_j ||c_j - mu||``: the product (any summation order, FMA or not) is off by at most
``d eps / 2 ||x|| ||c_j - mu||`` (plus ``eps / 2`` of the same for rounding ``c_j - mu`` to
the dtype), doubled in ``v_j``; the float64 terms (``bias_j``, the subtraction) are far below
the second term. The constants leave a factor of 2 over the worst case. ``||x||`` is bounded
by ``||x - c_a|| + ||c_a||`` (no extra pass over the row).
When the true gap exceeds ``2 E`` the plain kernel's argmin is ``a`` whatever its rounding,
so skipping is safe; exact ties (duplicates, coincident centres) are never skipped. Rows that
are not skipped get their distances from a product: the whole 1,024-row block's product
computed exactly as the plain kernel does (then the argmin is the plain kernel's, bit for
bit), or, when few rows of a block need it, a float64 product of just those rows, centred on
``mu`` (error far below ``E``), accepted only when its best and second-best values differ by
more than ``2 E`` plus its own error bound (else the block's plain product decides; a block
whose near-ties keep needing it goes straight to the plain product). All bound arithmetic is
in float64 and padded the safe way (relative ``1e-9``, plus an absolute term at the row's
scale). Where the plain kernel's own rounding is coarse (float32 data far from the origin,
``E`` large), near-ties are common, most blocks take the plain product and little is saved.
Partial sums and inertia are accumulated in row order with the plain kernel's statements, so
the per-block partials, hence the centres, are bit-identical to the plain path's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .lloyd import BLOCK_ROWS, CentreSet

__all__ = ["BoundsState", "BoundsStep", "bounds_partials", "bounds_step"]

#: relative padding of every bound computed in float64 (far above its rounding error)
PAD = 1e-9


class BoundsState:
    """Per-row state of one block, kept on the worker between iterations: the label (int32)
    and a lower bound on the distance to the second-closest centre (float64), 12 bytes a row."""

    __slots__ = ("labels", "lower", "tries")

    #: bytes per row
    BYTES_PER_ROW = 12

    def __init__(self, labels: np.ndarray, lower: np.ndarray, tries: np.ndarray) -> None:
        self.labels = labels
        self.lower = lower
        #: decayed counts of partial products tried and sent back to the plain product
        self.tries = tries


class BoundsStep:
    """What one iteration broadcasts to the blocks (small: O(k d)).

    ``full``: recompute every row (no usable state: first iteration, or after an empty
    cluster was re-seeded).
    """

    __slots__ = ("centre_sq", "cnorm", "cs", "drift", "drift_arg", "drift_second", "full",
                 "half_sep", "margin", "margin64", "radius", "reference", "shifted64_t")

    def __init__(
        self,
        cs: CentreSet,
        reference: np.ndarray,
        drift: np.ndarray,
        half_sep: np.ndarray,
        margin: float,
        margin64: float,
        radius: float,
        full: bool,
    ) -> None:
        self.cs = cs
        self.reference = reference
        shifted = cs.centres.astype(np.float64) - reference
        self.shifted64_t = np.ascontiguousarray(shifted.T)
        self.centre_sq = np.einsum("ij,ij->i", shifted, shifted)
        c64 = cs.centres.astype(np.float64)
        #: centre norms, rounded up: ``||x|| <= ||x - c_a|| + ||c_a||`` for the error bounds
        self.cnorm = np.sqrt(np.einsum("ij,ij->i", c64, c64)) * (1 + PAD)
        self.drift = drift
        order = np.argsort(-drift, kind="stable")
        self.drift_arg = int(order[0])
        self.drift_second = float(drift[order[1]]) if drift.size > 1 else 0.0
        self.half_sep = half_sep
        self.margin = margin
        self.margin64 = margin64
        self.radius = radius
        self.full = full


def bounds_step(
    C: np.ndarray, C_prev: np.ndarray | None, reference: np.ndarray, full: bool
) -> BoundsStep:
    """The broadcast of an iteration with centres ``C`` whose state was built against
    ``C_prev`` (None, or ``full``: every row is recomputed)."""
    cs = CentreSet(C, reference)
    ref = np.asarray(reference, dtype=np.float64)
    c64 = C.astype(np.float64)
    k, d = C.shape
    if C_prev is None:
        full = True
        drift = np.zeros(k)
    else:
        drift = np.sqrt(((c64 - C_prev.astype(np.float64)) ** 2).sum(axis=1)) * (1 + PAD)
    if k > 1:
        cc = np.sqrt(np.maximum(_pairwise_sq(c64), 0.0))
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
    return BoundsStep(cs, ref, drift, half_sep, margin, margin64, radius, full)


def _pairwise_sq(c: np.ndarray) -> np.ndarray:
    # direct differences (not the expanded form): exact to rounding, O(k^2 d) on the driver
    return ((c[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)


def bounds_partials(
    X: np.ndarray, w: np.ndarray | None, step: BoundsStep, state: BoundsState | None
) -> tuple[np.ndarray, np.ndarray, float, int, BoundsState]:
    """One pruned E-step on a block: the plain :func:`lloyd_partials` results, the number of
    row-centre distances computed by products, and the new state (``state`` is not changed).
    """
    n = X.shape[0]
    k, d = step.cs.centres.shape
    full = step.full or state is None
    labels = np.zeros(n, np.int32) if state is None else state.labels.copy()
    lower = np.zeros(n, np.float64) if state is None else state.lower.copy()
    tries = np.zeros(2) if state is None else state.tries * 0.5
    sums = np.zeros((k, d), dtype=np.float64)
    wsum = np.zeros(k, dtype=np.float64)
    wa = np.ones(0) if w is None else np.ascontiguousarray(w, dtype=np.float64)
    inertia, computed = _bounds_kernel(
        X, step.cs.shifted_t, step.cs.bias, step.cs.centres, wa, w is not None,
        step.reference, labels, lower, step.drift, step.drift_arg, step.drift_second,
        step.half_sep, step.margin, step.margin64, step.radius, full, sums, wsum,
        step.shifted64_t, step.centre_sq, tries, step.cnorm,
    )
    return sums, wsum, float(inertia), int(computed), BoundsState(labels, lower, tries)


_FLAGS = {"reassoc", "contract", "nsz", "arcp"}  # the plain kernel's flags (same accumulation)


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _sq_to(X, row, C, j, d):
    s = 0.0
    for t in range(d):
        diff = np.float64(X[row, t]) - np.float64(C[j, t])
        s += diff * diff
    return s


@njit(nogil=True, cache=True)
def _errors(xn, margin, margin64, radius, err, err64, i):
    # error bounds of the plain kernel's values (err) and of float64 ones (err64) for a row
    # of norm at most xn
    err64[i] = margin64 * (xn + radius) * (xn + radius)
    err[i] = margin * xn + err64[i]


@njit(nogil=True, cache=True)
def _best_two(v, k):
    # first minimum (the plain kernel's tie rule) and the smallest value at any other index
    best = np.inf
    bj = 0
    for j in range(k):
        if v[j] < best:
            best = v[j]
            bj = j
    second = np.inf
    for j in range(k):
        if j != bj and v[j] < second:
            second = v[j]
    return bj, best, second


@njit(nogil=True, cache=True)
def _bounds_test(
    X, start, m, C, labels, lower, drift, drift_arg, drift_second, half_sep, margin, margin64,
    radius, full, cnorm, sq, err, err64, todo,
):
    # the rows of X[start:start + m] whose bounds cannot exclude a change go to todo (their
    # count is returned); the others keep their label, with sq their exact distance to it
    d = X.shape[1]
    nt = 0
    for i in range(m):
        row = start + i
        if full:
            todo[nt] = i
            nt += 1
            continue
        a = labels[row]
        s = _sq_to(X, row, C, a, d)
        sq[i] = s
        du = np.sqrt(s) * (1.0 + 1e-9)
        _errors(du + cnorm[a], margin, margin64, radius, err, err64, i)
        low = lower[row] - (drift_second if a == drift_arg else drift[drift_arg])
        low2 = 2.0 * half_sep[a] - du
        if low2 > low:
            low = low2
        # relative pad, and an absolute one at the row's scale (the subtractions above
        # round by about eps64 times the distances involved, all <= ||x|| + radius)
        low = low * (1.0 - 1e-9) - 1e-14 * (du + cnorm[a] + radius)
        if low > du and low * low - du * du > 2.0 * err[i]:
            lower[row] = low
        else:
            todo[nt] = i
            nt += 1
    return nt


@njit(nogil=True, cache=True)
def _bounds_kernel(
    X, shifted_t, bias, C, w, has_w, ref, labels, lower, drift, drift_arg, drift_second,
    half_sep, margin, margin64, radius, full, sums, wsum, shifted64_t, centre_sq, tries, cnorm,
):
    n, d = X.shape
    k = shifted_t.shape[1]
    G = np.empty((BLOCK_ROWS, k), dtype=X.dtype)
    Xg = np.empty((BLOCK_ROWS, d), dtype=np.float64)
    Gg = np.empty((BLOCK_ROWS, k), dtype=np.float64)
    err64 = np.empty(BLOCK_ROWS, dtype=np.float64)
    v = np.empty(k, dtype=np.float64)
    sq = np.empty(BLOCK_ROWS, dtype=np.float64)
    err = np.empty(BLOCK_ROWS, dtype=np.float64)
    todo = np.empty(BLOCK_ROWS, dtype=np.int64)
    inertia = 0.0
    computed = 0
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        m = stop - start
        # 1. bounds test; exact distance to the assigned centre
        nt = _bounds_test(
            X, start, m, C, labels, lower, drift, drift_arg, drift_second, half_sep, margin,
            margin64, radius, full, cnorm, sq, err, err64, todo,
        )
        # 2. distances of the rows the bounds could not settle
        if nt > 0:
            # a partial product pays unless most rows need one, or near-ties keep sending
            # this chunk's blocks back to the plain product anyway
            plain = full or 2 * nt > m or 2.0 * tries[1] > tries[0] + 2.0
            if not plain:
                tries[0] += 1.0
            if plain:
                np.dot(X[start:stop], shifted_t, G[:m])
                computed += m * k
            else:
                for r in range(nt):
                    for t in range(d):
                        Xg[r, t] = np.float64(X[start + todo[r], t]) - ref[t]
                np.dot(Xg[:nt], shifted64_t, Gg[:nt])
                computed += nt * k
            for r in range(nt):
                i = todo[r]
                row = start + i
                if plain:
                    for j in range(k):
                        v[j] = bias[j] - 2.0 * G[i, j]
                else:
                    for j in range(k):
                        v[j] = centre_sq[j] - 2.0 * Gg[r, j]
                bj, best, second = _best_two(v, k)
                if full:
                    sq[i] = _sq_to(X, row, C, bj, d)
                    _errors(np.sqrt(sq[i]) * (1.0 + 1e-9) + cnorm[bj], margin, margin64,
                            radius, err, err64, i)
                if not plain and not (second - best > 2.0 * err[i] + 2.0 * err64[i]):
                    # too close to call from another product: the plain kernel's values decide
                    plain = True
                    tries[1] += 1.0
                    np.dot(X[start:stop], shifted_t, G[:m])
                    computed += m * k
                    for j in range(k):
                        v[j] = bias[j] - 2.0 * G[i, j]
                    bj, best, second = _best_two(v, k)
                xm2 = 0.0
                for t in range(d):
                    diff = np.float64(X[row, t]) - ref[t]
                    xm2 += diff * diff
                low2 = second + xm2 * (1.0 - 1e-9) - 2.0 * err[i]
                lower[row] = np.sqrt(low2) * (1.0 - 1e-9) if low2 > 0.0 else 0.0
                if not full and bj != labels[row]:
                    sq[i] = _sq_to(X, row, C, bj, d)
                labels[row] = bj
        # 3. partials in row order, with the plain kernel's statements
        inertia = _accumulate(X, start, m, labels, sq, w, has_w, sums, wsum, inertia)
    return inertia, computed


@njit(nogil=True, cache=True, fastmath=_FLAGS)
def _accumulate(X, start, m, labels, sq, w, has_w, sums, wsum, inertia):
    d = X.shape[1]
    for i in range(m):
        row = start + i
        bj = labels[row]
        wi = w[row] if has_w else 1.0
        for t in range(d):
            sums[bj, t] += wi * X[row, t]
        wsum[bj] += wi
        inertia += wi * sq[i]
    return inertia
