"""Pure per-chunk kernels: numpy and numba, no Dask, no I/O.

Every function here takes one in-memory chunk (a C-contiguous 2-D array) plus small
broadcast values (centres, weights) and returns small partial results (sums, counts,
inertia, candidate rows) that the Dask layer only has to add up.

Inputs are assumed to be validated by the public entry points (finite, 2-D, float32 or
float64, C-contiguous); these functions do not re-check them.

Distances
---------
The argmin over centres uses one BLAS product per block of rows, with the centres
*re-centred* on a reference point ``mu`` (usually the data mean)::

    ||x - c||^2 = ||x - mu||^2 - 2 (x - mu).(c - mu) + ||c - mu||^2

Only the terms that depend on the centre matter for the argmin, and they are
``bias_j - 2 x.(c_j - mu)`` with ``bias_j = ||c_j - mu||^2 + 2 mu.(c_j - mu)``. Taking
products with ``c - mu`` instead of ``c`` avoids the cancellation of the textbook expanded
form on data far from the origin (scikit-learn centres the data for the same reason; here
only the k centres are shifted, the data is never copied). The distance to the chosen
centre is then computed exactly as ``sum((x - c)^2)``, which costs ``d`` operations per row
next to the product's ``k * d`` and makes every reported inertia exact. Partial sums are
accumulated by segments of rows (:mod:`.segments`), as in every Lloyd kernel. With float64
data and enough centres the argmin is screened in float32 first (:mod:`.screen`): the same
labels bit for bit, at about twice the product's speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from .mstep import m_step, relocate_empty, select_farthest
from .screen import MAX_FAIL_SHARE, no_screen, screen_args, screen_buffers, screen_tile
from .segments import TILE_ROWS, add_segment, clear, segment_rows

#: Rows per block inside the compiled kernels: a block's (rows x k) distances stay in cache.
BLOCK_ROWS = TILE_ROWS

__all__ = [
    "BLOCK_ROWS",
    "CentreSet",
    "assign",
    "farthest_points",
    "inertia_shift",
    "lloyd_partials",
    "lloyd_partials_multi",
    "m_step",
    "relocate_empty",
    "select_farthest",
    "sq_distances",
]


class CentreSet:
    """Centres prepared for the blocked argmin kernels.

    Parameters
    ----------
    centres : ndarray of shape (k, d)
        Centres, in the dtype of the data they will be compared with.
    reference : ndarray of shape (d,)
        Reference point (typically the data mean) the centres are shifted by before the
        products; any point gives the same argmin in exact arithmetic.
    """

    __slots__ = ("bias", "centres", "reference", "screen", "shifted_t")

    def __init__(self, centres: np.ndarray, reference: np.ndarray) -> None:
        c64 = np.asarray(centres, dtype=np.float64)
        ref = np.asarray(reference, dtype=np.float64)
        shifted = c64 - ref
        self.centres = np.ascontiguousarray(centres)
        self.reference = ref
        # (d, k) so that one GEMM gives a (rows, k) block.
        self.shifted_t = np.ascontiguousarray(shifted.T.astype(self.centres.dtype))
        self.bias = np.einsum("ij,ij->i", shifted, shifted) + 2.0 * (shifted @ ref)
        # the float32 screen of the argmin (:mod:`.screen`; off for float32 data, small k)
        self.screen = screen_args(self.centres, ref, shifted)

    @property
    def k(self) -> int:
        """Number of centres."""
        return self.centres.shape[0]

    def __reduce__(self) -> tuple:
        # pickled as its inputs, rebuilt where it lands: the derived arrays (the shifted
        # centres, the screen's) are ~3.5x the centres' bytes, and every iteration
        # broadcasts a CentreSet to every worker; the rebuild is deterministic
        return (CentreSet, (self.centres, self.reference))


# --------------------------------------------------------------------------- distances


def sq_distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (rows x centres) by the expanded form, clamped at 0.

    Uses row norms and one GEMM. For reporting distances of many pairs (``transform``,
    KNN); the argmin kernels use the shifted form described in the module docstring.
    """
    xx = np.einsum("ij,ij->i", X, X)
    cc = np.einsum("ij,ij->i", C, C)
    D = X @ C.T
    D *= -2
    D += xx[:, None]
    D += cc[None, :]
    np.maximum(D, 0, out=D)
    return D


# Reassociation lets LLVM vectorise the per-row distance and sum loops (1.3-1.7x here);
# no 'nnan'/'ninf' flags, so the comparisons with inf stay exact.
@njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _assign_kernel(X, shifted_t, bias, C, w, has_w, labels, mind, sums, wsum, accumulate, exact,
                   seg, sc):
    """Blocked argmin + exact distance (+ weighted sums, by segments of ``seg`` rows:
    :mod:`.segments`) over the rows of X; the argmin screened in float32 when ``sc[0]``
    (:mod:`.screen`, the same labels).

    Returns the weighted exact inertia. ``labels``/``mind`` are written when their length
    is n; ``sums``/``wsum`` are accumulated when ``accumulate``. Without ``exact`` the exact
    distances are not computed (the inertia returned is 0; ``mind`` must not be asked for):
    a Lloyd iteration needs only the argmin and the sums, and the distance loop costs
    ``d`` operations per row beside the product's ``k * d`` (measured: 18% of the kernel
    at k = 8, d = 32).
    """
    n = X.shape[0]
    k = shifted_t.shape[1]
    store = labels.shape[0] == n
    G = np.empty((BLOCK_ROWS, k), dtype=X.dtype)
    ss = np.zeros((k if accumulate else 0, X.shape[1]), dtype=np.float64)
    sw = np.zeros(k if accumulate else 0, dtype=np.float64)
    screen = sc[0]
    sb = screen_buffers(screen, k, X.shape[1])
    inertia = 0.0
    for start in range(0, n, BLOCK_ROWS):
        m = min(BLOCK_ROWS, n - start)
        inertia = _assign_tile(X, start, m, G[:m], shifted_t, bias, C, w, has_w, labels, mind,
                               ss, sw, accumulate, exact, store, inertia, screen, sc, sb)
        if accumulate and ((start + m) % seg == 0 or start + m == n):
            add_segment(sums, wsum, ss, sw)
            clear(ss, sw)
        # rows that keep failing the screen (many ties: duplicated rows on coincident
        # centres) cost more in float64 one by one than the screen saves: the rest of the
        # chunk goes without
        if screen and sb[7][1] > MAX_FAIL_SHARE * sb[7][0] + 64:
            screen = False
    return inertia


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _assign_tile(X, start, m, Gb, shifted_t, bias, C, w, has_w, labels, mind, sums, wsum,
                 accumulate, exact, store, inertia, screen, sc, sb):
    # one tile of _assign_kernel (rows start..start + m, products into Gb): the statements
    # every kernel built on it shares, so their results agree bit for bit; with ``screen``
    # the labels of the rows the float32 screen settles come from it (the same ones)
    d = X.shape[1]
    k = shifted_t.shape[1]
    lab = sb[5]
    ok = sb[6]
    plain = True
    if screen:
        plain = screen_tile(X, start, m, sc, sb) > 0
    if plain:
        np.dot(X[start:start + m], shifted_t, Gb)
    for i in range(m):
        row = start + i
        if screen and ok[i]:
            bj = lab[i]
        else:
            best = np.inf
            bj = 0
            for j in range(k):
                v = bias[j] - 2.0 * Gb[i, j]
                if v < best:
                    best = v
                    bj = j
        wi = w[row] if has_w else 1.0
        s = 0.0
        if exact:
            for t in range(d):
                diff = np.float64(X[row, t]) - np.float64(C[bj, t])
                s += diff * diff
        if accumulate:
            for t in range(d):
                sums[bj, t] += wi * X[row, t]
            wsum[bj] += wi
        inertia += wi * s
        if store:
            labels[row] = bj
            mind[row] = s
    return inertia


@njit(nogil=True, cache=True)
def _multi_kernel(X, w, has_w, packed_t, toff, bias, boff, C, coff, sums, soff, wsum, segs, sc):
    # _assign_kernel's partials (no exact distances) for several centre sets at once, tile by
    # tile: each tile is read from memory once for all of them (set f: k = boff[f + 1] -
    # boff[f] centres, its arrays packed flat at the offsets, segments of segs[f] rows), the
    # same statements in order
    n, d = X.shape
    nf = boff.shape[0] - 1
    G = np.empty(BLOCK_ROWS * boff[nf], dtype=X.dtype)
    ss = np.zeros(soff[nf], dtype=np.float64)
    sw = np.zeros(boff[nf], dtype=np.float64)
    no_labels = np.empty(0, dtype=np.int32)
    no_mind = np.empty(0, dtype=np.float64)
    sb = screen_buffers(False, 0, d)
    for start in range(0, n, BLOCK_ROWS):
        m = min(BLOCK_ROWS, n - start)
        for f in range(nf):
            k = boff[f + 1] - boff[f]
            Gf = G[BLOCK_ROWS * boff[f]:BLOCK_ROWS * boff[f + 1]].reshape((BLOCK_ROWS, k))
            _assign_tile(
                X, start, m, Gf[:m], packed_t[toff[f]:toff[f + 1]].reshape((d, k)),
                bias[boff[f]:boff[f + 1]], C[coff[f]:coff[f + 1]].reshape((k, d)), w, has_w,
                no_labels, no_mind, ss[soff[f]:soff[f + 1]].reshape((k, d)),
                sw[boff[f]:boff[f + 1]], True, False, False, 0.0, False, sc, sb)
            if (start + m) % segs[f] == 0 or start + m == n:
                ssf = ss[soff[f]:soff[f + 1]].reshape((k, d))
                swf = sw[boff[f]:boff[f + 1]]
                add_segment(sums[soff[f]:soff[f + 1]].reshape((k, d)), wsum[boff[f]:boff[f + 1]],
                            ssf, swf)
                clear(ssf, swf)


_EMPTY_F = np.empty(0, dtype=np.float64)
_EMPTY_I = np.empty(0, dtype=np.int32)
_EMPTY_2D = np.empty((0, 0), dtype=np.float64)


def _weights_arg(w: np.ndarray | None) -> tuple[np.ndarray, bool]:
    if w is None:
        return _EMPTY_F, False
    return np.ascontiguousarray(w, dtype=np.float64), True


def assign(
    X: np.ndarray, cs: CentreSet, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Nearest centre of every row, its exact squared distance, and the weighted inertia.

    Returns
    -------
    labels : ndarray of shape (n,), int32
    min_sq_dist : ndarray of shape (n,), float64
        Exact ``||x - c_label||^2``.
    inertia : float
        ``sum(w * min_sq_dist)``.
    """
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int32)
    mind = np.empty(n, dtype=np.float64)
    wa, has_w = _weights_arg(w)
    inertia = _assign_kernel(
        X, cs.shifted_t, cs.bias, cs.centres, wa, has_w, labels, mind, _EMPTY_2D, _EMPTY_F, False,
        True, BLOCK_ROWS, cs.screen,
    )
    return labels, mind, float(inertia)


def lloyd_partials(
    X: np.ndarray, cs: CentreSet, w: np.ndarray | None = None, exact: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """One Lloyd E-step on a chunk, returned as partials for the M-step.

    Parameters
    ----------
    exact : bool
        Compute the exact inertia (else 0 is returned in its place: see
        :func:`inertia_shift` for the inertia of later iterations from the sums).

    Returns
    -------
    sums : ndarray of shape (k, d), float64
        Weighted sum of the rows assigned to each centre.
    weight : ndarray of shape (k,), float64
        Total weight assigned to each centre.
    inertia : float
        Exact weighted inertia of this chunk against ``cs`` (0 without ``exact``).
    """
    k, d = cs.centres.shape
    sums = np.zeros((k, d), dtype=np.float64)
    wsum = np.zeros(k, dtype=np.float64)
    wa, has_w = _weights_arg(w)
    inertia = _assign_kernel(
        X, cs.shifted_t, cs.bias, cs.centres, wa, has_w, _EMPTY_I, _EMPTY_F, sums, wsum, True,
        exact, segment_rows(k, d), cs.screen,
    )
    return sums, wsum, float(inertia)


def lloyd_partials_multi(
    X: np.ndarray, centre_sets: Sequence[CentreSet], w: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """``lloyd_partials(X, cs, w, exact=False)`` of one chunk for several centre sets (the K
    of a sweep) in one pass: the chunk is read tile by tile and each tile, in cache, serves
    every set. Each result equals its set's own bit for bit: the same products, argmin and
    sums in the same order. (Without the exact distances: their reassociated sum may be
    vectorised differently where the compiler sees a different context.)

    Parameters
    ----------
    centre_sets : sequence of CentreSet
        In the dtype of ``X``.

    Returns
    -------
    list of (sums, weight, 0.0)
        As :func:`lloyd_partials` returns them, one per centre set.
    """
    nf = len(centre_sets)
    d = X.shape[1]
    ks = np.array([cs.k for cs in centre_sets], dtype=np.int64)
    boff = np.concatenate([[0], np.cumsum(ks)]).astype(np.int64)
    doff = boff * d
    packed_t = np.concatenate([cs.shifted_t.ravel() for cs in centre_sets]).astype(X.dtype)
    bias = np.concatenate([cs.bias for cs in centre_sets])
    C = np.concatenate([cs.centres.ravel() for cs in centre_sets]).astype(X.dtype)
    sums = np.zeros(int(doff[-1]), dtype=np.float64)
    wsum = np.zeros(int(boff[-1]), dtype=np.float64)
    wa, has_w = _weights_arg(w)
    segs = np.array([segment_rows(int(k), d) for k in ks], dtype=np.int64)
    _multi_kernel(X, wa, has_w, packed_t, doff, bias, boff, C, doff, sums, doff, wsum, segs,
                  no_screen(0, d))
    return [
        (sums[doff[f]:doff[f + 1]].reshape(int(ks[f]), d), wsum[boff[f]:boff[f + 1]], 0.0)
        for f in range(nf)
    ]


def inertia_shift(
    centres: np.ndarray, reference: np.ndarray, sums: np.ndarray, wsum: np.ndarray
) -> float:
    """The inertia of an assignment minus the data's weighted sum of squares about
    ``reference`` (``sum_i w_i ||x_i - mu||^2``, the same for every assignment), from the
    assignment's partial sums alone::

        sum_j sum_{i in j} w_i (||x_i - c_j||^2 - ||x_i - mu||^2)
            = sum_j W_j ||c_j - mu||^2 - 2 (c_j - mu).(S_j - W_j mu)

    So one exact inertia gives that constant, and every later iteration's inertia costs
    ``k * d`` operations instead of a pass. Float64; the rounding is that of the partial
    sums (values of ``|x|``) times ``|c_j - mu|``, the precision the centres computed from
    the same sums have: far below the inertia unless the data sits far from its mean
    against its spread (a row-by-row inertia is then more precise: the final one is).
    """
    mu = np.asarray(reference, dtype=np.float64)
    shifted = np.asarray(centres, dtype=np.float64) - mu
    moved = np.asarray(sums, dtype=np.float64) - np.outer(wsum, mu)
    return float(wsum @ np.einsum("ij,ij->i", shifted, shifted) - 2.0 * np.sum(shifted * moved))


def farthest_points(
    X: np.ndarray, cs: CentreSet, w: np.ndarray | None, offset: int, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``m`` rows of a chunk farthest from their nearest centre (for empty-cluster relocation).

    Returns ``(sq_dist, global_index, rows, labels, weights)`` sorted by decreasing distance
    and then increasing global index, so that merging chunks is deterministic.
    """
    labels, mind, _ = assign(X, cs, w)
    m = min(m, X.shape[0])
    # stable order: larger distance first, ties by lower index
    order = np.lexsort((np.arange(X.shape[0]), -mind))[:m]
    wv = np.ones(m) if w is None else np.asarray(w, dtype=np.float64)[order]
    return mind[order], order + offset, X[order].copy(), labels[order], wv
