"""Pure kernels of the chunked k-nearest-neighbour search: numpy and numba, no Dask, no I/O.

One (query block, reference block) pair
----------------------------------------
:func:`block_topk` returns the exact ``k`` nearest rows of one reference block for every
query row, in the order of ``(squared distance, index)``, without ever holding the
``n_query x n_ref`` distance matrix. It works in three passes, each only for the rows the
previous one could not settle:

1. **Selection in float32.** Both sides are shifted by a reference point ``mu`` (the mean of
   the reference set) and the reference block is walked in tiles of :data:`TILE_REF` rows;
   one float32 GEMM per (:data:`TILE_QUERY` x :data:`TILE_REF`) tile gives
   ``v = ||r - mu||^2 - 2 (q - mu).(r - mu)``, and a bounded max-heap per query row keeps
   the ``n_candidates(k)`` smallest ``v`` (``k`` plus a margin). A vectorised pass flags the ``v``
   under the row's current worst candidate and only those few reach the heap (scikit-learn's
   ArgKmin compares each value with the heap root one by one).
2. **Exact refinement and certificate.** The candidates' squared distances are recomputed
   exactly as ``sum((q - r)^2)`` in float64 and sorted by (distance, index). Every row
   outside the heap had ``v >= A``, the heap's largest value, and the rounding error of a
   ``v`` is at most ``E = 2 (d + 4) u (||q - mu|| + max ||r - mu||)^2`` (``u`` the unit
   roundoff of the selection precision: the standard bound on a ``d``-term dot product,
   the input casts and the final addition, with a factor 2 of margin). So if
   ``||q - mu||^2 + A - E`` is above the k-th exact distance, no row outside the heap can
   come before it, ties included, and the row is *certified*.
3. Rows that fail the certificate (low-dimensional data, or exact duplicates straddling
   the cut) are searched again with a float64 selection (``u = 2^-53``), and the few that
   still fail with an exact scan of the block.

The result is exact, and deterministic across chunkings: a pair's squared distance is
always computed by the same loop (:func:`_sqdist`), and ties are broken by the lower index.

:func:`merge_topk` (the reduce step over reference blocks) keeps the k smallest of several
top-k lists by (distance, global index); :func:`vote` and :func:`regress` reproduce
scikit-learn's ``KNeighborsClassifier`` / ``KNeighborsRegressor`` from the neighbours.

Inputs are assumed validated (finite, 2-D, C-contiguous float32/float64).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "PAD_INDEX",
    "TILE_QUERY",
    "TILE_REF",
    "block_topk",
    "exact_topk",
    "gather_values",
    "merge_topk",
    "n_candidates",
]

#: Query rows per GEMM tile of the plain selection.
TILE_QUERY = 256
#: Reference rows per GEMM tile: a (TILE_QUERY x TILE_REF) float32 tile is 512 KiB, in L2
#: (256 x 512 rather than 128 x 1024: 0.57 against 0.64 ns per distance, session 12).
TILE_REF = 512
#: Index of padding entries (a block with fewer than k rows): sorts after every real row.
PAD_INDEX = np.iinfo(np.int64).max

_U32 = float(np.finfo(np.float32).eps) / 2
_U64 = float(np.finfo(np.float64).eps) / 2
_FAST = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: comparisons with inf stay exact


def n_candidates(k: int) -> int:
    """Heap size of the approximate selection for ``k`` neighbours: ``k + max(8, k // 4)``.

    The margin only has to hold rows within the selection's rounding of the k-th (the
    certificate); each slot costs heap replacements and an exact distance per query
    (``max(2k, k + 8)`` before: see ``benchmarks/README.md``, ``bench_knn.py`` session 22).
    """
    return k + max(8, k // 4)


# --------------------------------------------------------------------------- heaps


@njit(nogil=True, cache=True, inline="always")
def _after(v1, i1, v2, i2):
    """(v1, i1) comes after (v2, i2) in (value, index) order."""
    return v1 > v2 or (v1 == v2 and i1 > i2)


@njit(nogil=True, cache=True, inline="always")
def _replace_root(hv, hi, row, v, idx):
    """Replace the root (largest) of max-heap ``row`` by (v, idx) and sift it down."""
    width = hv.shape[1]
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= width:
            break
        if c + 1 < width and _after(hv[row, c + 1], hi[row, c + 1], hv[row, c], hi[row, c]):
            c += 1
        if not _after(hv[row, c], hi[row, c], v, idx):
            break
        hv[row, pos] = hv[row, c]
        hi[row, pos] = hi[row, c]
        pos = c
    hv[row, pos] = v
    hi[row, pos] = idx


@njit(nogil=True, cache=True, inline="always")
def _insert(vals, idx, c, v, j):
    """Insert (v, j) into the sorted first ``c`` entries of (vals, idx)."""
    p = c
    while p > 0 and _after(vals[p - 1], idx[p - 1], v, j):
        vals[p] = vals[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    vals[p] = v
    idx[p] = j


@njit(nogil=True, cache=True)
def _sqdist(Q, i, R, j):
    """Exact squared distance of query row i and reference row j, in float64.

    Always the same loop (no reassociation), so a pair gets the same value in every pass
    and every chunking.
    """
    s = 0.0
    for t in range(Q.shape[1]):
        diff = np.float64(Q[i, t]) - np.float64(R[j, t])
        s += diff * diff
    return s


# --------------------------------------------------------------------------- pass 1/2


@njit(nogil=True, cache=True, fastmath=_FAST, inline="always")
def _offer_row(row, norms, nbase, m, r0, qi, hv, hi, flags, words, count_first):
    """Offer query ``qi``'s values ``row[j] + norms[nbase + j]`` (heap index ``r0 + j``,
    ``j < m``) to its heap: only those under the heap's largest value enter.

    A vectorised pass flags the few values under it, then a scan over 8-byte words visits
    only the flagged ones (``flags`` past ``m`` are never read). With ``count_first`` a
    vectorised count comes first: in a plain search, once a heap holds near rows most
    (query, tile) rows have no value under it and cost that one pass (selection 0.62 ->
    0.54 ns per distance at 128 x 1,024 tiles, one thread, 4,000 x 250,000, d = 32); the
    pruned search visits near rows, where the count is mostly wasted (+13%), and skips it.
    """
    thr = hv[qi, 0]
    # a slice: ``norms[nbase + j]`` kept LLVM from vectorising the passes (0.47 -> 0.07 ns)
    nn = norms[nbase : nbase + m]
    if count_first:
        below = 0
        for j in range(m):
            below += row[j] + nn[j] < thr
        if below == 0:
            return
    for j in range(m):
        flags[j] = np.uint8(row[j] + nn[j] < thr)
    for w in range((m + 7) // 8):
        if words[w] == 0:
            continue
        for j in range(8 * w, min(8 * w + 8, m)):
            if flags[j]:
                v = row[j] + nn[j]
                if v < thr:  # ties keep the earlier (lower) index
                    _replace_root(hv, hi, qi, v, r0 + j)
                    thr = hv[qi, 0]


@njit(nogil=True, cache=True, fastmath=_FAST)
def _select(Qs, R, mu, hv, hi):
    """Keep, per query row, the ``hv.shape[1]`` smallest ``||r-mu||^2 - 2 (q-mu).(r-mu)``.

    ``Qs`` holds the shifted query rows in the selection precision (float32 or float64);
    ``R`` is the reference block as stored. Reference tiles are shifted and cast once each,
    then multiplied with every query tile. Returns ``max ||r - mu||`` over the block.
    """
    nq, d = Qs.shape
    nr = R.shape[0]
    tr = min(TILE_REF, nr)
    tq = min(TILE_QUERY, nq)
    Rb = np.empty((tr, d), dtype=Qs.dtype)
    rn = np.empty(tr, dtype=Qs.dtype)
    G = np.empty(tq * tr, dtype=Qs.dtype)
    flags = np.zeros(8 * ((tr + 7) // 8), dtype=np.uint8)
    words = flags.view(np.uint64)
    rmax2 = 0.0
    for r0 in range(0, nr, tr):
        m = min(tr, nr - r0)
        for j in range(m):
            s = 0.0
            for t in range(d):
                x = np.float64(R[r0 + j, t]) - mu[t]
                s += x * x
                Rb[j, t] = -2.0 * x  # scaling by -2 is exact
            rn[j] = s
            rmax2 = max(rmax2, s)
        Rt = Rb[:m].T
        for q0 in range(0, nq, tq):
            mq = min(tq, nq - q0)
            g = G[: mq * m].reshape((mq, m))
            np.dot(Qs[q0 : q0 + mq], Rt, g)
            for i in range(mq):
                _offer_row(g[i], rn, 0, m, r0, q0 + i, hv, hi, flags, words, True)
    return np.sqrt(rmax2)


@njit(nogil=True, cache=True)
def _refine(Q, R, hv, hi, k, qnorm, rmax, unit, out_d, out_i, ok, order, visit):
    """Exact distances of the candidates, sorted by (distance, index); certify each row.

    ``order`` maps a heap index to its row of ``R`` (the identity for a plain block, the
    cluster order for a pruned one); outputs hold rows of ``R``. The query rows are taken
    in the order ``visit``: queries of one region one after the other share candidate rows
    of ``R``, which then come from cache (the pruned search passes its region order: 0.6-0.9x
    the time of the block's own order, 4,096 clustered queries against 250,000 rows).
    """
    d = Q.shape[1]
    nr = R.shape[0]
    width = hi.shape[1]
    cs = np.empty(width)
    ci = np.empty(width, dtype=np.int64)
    rel = 4.0 * (d + 2) * _U64
    for i in visit:
        c = 0
        for t in range(width):
            if hi[i, t] < 0:
                continue
            j = order[hi[i, t]]
            _insert(cs, ci, c, _sqdist(Q, i, R, j), j)
            c += 1
        m = min(k, c)
        for t in range(m):
            out_d[i, t] = cs[t]
            out_i[i, t] = ci[t]
        if nr > width:  # rows outside the heap exist: is every one of them beyond the k-th?
            err = 2.0 * (d + 4) * unit * (qnorm[i] + rmax) ** 2
            lower = qnorm[i] * qnorm[i] + np.float64(hv[i, 0]) - err
            ok[i] = lower > cs[k - 1] * (1.0 + rel)
        else:
            ok[i] = True


@njit(nogil=True, cache=True)
def _scan(Q, R, hv, hi):
    """Exact selection: every squared distance computed by :func:`_sqdist` (last resort)."""
    for i in range(Q.shape[0]):
        for j in range(R.shape[0]):
            s = _sqdist(Q, i, R, j)
            if s < hv[i, 0]:
                _replace_root(hv, hi, i, s, j)


@njit(nogil=True, cache=True)
def _sort_rows(hv, hi, out_d, out_i):
    """Heap rows sorted ascending by (value, index) into the outputs (padding stays last)."""
    for i in range(hv.shape[0]):
        m = 0
        for t in range(hv.shape[1]):
            if hi[i, t] >= 0:
                _insert(out_d[i], out_i[i], m, hv[i, t], hi[i, t])
                m += 1


def _empty_heap(n: int, width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, width), np.inf, dtype=dtype), np.full((n, width), -1, dtype=np.int64)


def _padded(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), np.inf), np.full((n, k), PAD_INDEX, dtype=np.int64)


def _pass(
    Q: np.ndarray, R: np.ndarray, k: int, mu: np.ndarray, dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One approximate selection in ``dtype`` + exact refinement; returns (d2, idx, ok)."""
    shifted = Q - mu
    Qs = np.ascontiguousarray(shifted, dtype=dtype)
    qnorm = np.sqrt(np.einsum("ij,ij->i", shifted, shifted))
    hv, hi = _empty_heap(Q.shape[0], n_candidates(k), dtype)
    rmax = _select(Qs, R, mu, hv, hi)
    out_d, out_i = _padded(Q.shape[0], k)
    ok = np.empty(Q.shape[0], dtype=np.bool_)
    unit = _U32 if np.dtype(dtype) == np.float32 else _U64
    _refine(
        Q, R, hv, hi, k, qnorm, rmax, unit, out_d, out_i, ok, np.arange(R.shape[0]),
        np.arange(Q.shape[0]),
    )
    return out_d, out_i, ok


def exact_topk(Q: np.ndarray, R: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by scanning every pair (reference implementation and last resort).

    Returns
    -------
    sq_dist : ndarray of shape (n_query, k), float64
    index : ndarray of shape (n_query, k), int64
        Positions in ``R``, sorted by (sq_dist, index); padded with ``(inf, PAD_INDEX)``
        when ``R`` has fewer than ``k`` rows.
    """
    hv, hi = _empty_heap(Q.shape[0], k, np.float64)
    _scan(Q, R, hv, hi)
    out_d, out_i = _padded(Q.shape[0], k)
    _sort_rows(hv, hi, out_d, out_i)
    return out_d, out_i


def block_topk(
    Q: np.ndarray,
    R: np.ndarray,
    k: int,
    mu: np.ndarray,
    offset: int = 0,
    precisions: tuple = (np.float32, np.float64),
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Exact k nearest rows of reference block ``R`` for every row of ``Q``.

    Parameters
    ----------
    Q : ndarray of shape (n_query, d)
        Query rows (same dtype as ``R``).
    R : ndarray of shape (n_ref, d)
        Reference block, C-contiguous.
    k : int
        Neighbours to keep (may exceed ``n_ref``: the rest is padding).
    mu : ndarray of shape (d,), float64
        Reference point both sides are shifted by (the reference mean).
    offset : int
        Global row number of ``R[0]``, added to the returned indices.
    precisions : tuple of dtypes
        Selection passes to try before the exact scan (the pruned search passes
        ``(np.float64,)`` for the rows its float32 pass could not certify).

    Returns
    -------
    sq_dist : ndarray of shape (n_query, k), float64
        Exact squared Euclidean distances, ascending.
    index : ndarray of shape (n_query, k), int64
        Global reference rows, ties in distance ordered by the lower index; padding is
        ``(inf, PAD_INDEX)``.
    stats : dict
        Rows settled by each pass: ``{"float32": n1, "float64": n2, "scan": n3}``.
    """
    nq = Q.shape[0]
    mu = np.asarray(mu, dtype=np.float64)
    out_d, out_i = _padded(nq, k)
    stats = {"float32": 0, "float64": 0, "scan": 0}
    if nq and R.shape[0]:
        rows = np.arange(nq)
        for dtype in precisions:
            name = np.dtype(dtype).name
            sub = Q if rows.size == nq else np.ascontiguousarray(Q[rows])
            dd, ii, ok = _pass(sub, R, k, mu, dtype)
            out_d[rows[ok]] = dd[ok]
            out_i[rows[ok]] = ii[ok]
            stats[name] = int(ok.sum())
            rows = rows[~ok]
            if rows.size == 0:
                break
        if rows.size:
            dd, ii = exact_topk(np.ascontiguousarray(Q[rows]), R, k)
            out_d[rows] = dd
            out_i[rows] = ii
            stats["scan"] = int(rows.size)
    real = out_i != PAD_INDEX
    out_i[real] += offset
    return out_d, out_i, stats


# --------------------------------------------------------------------------- merge


def gather_values(values: np.ndarray, index: np.ndarray, offset: int, fill) -> np.ndarray:
    """``values[index - offset]`` (the block's labels or targets of its neighbours), with
    ``fill`` (of ``values``' dtype) where the index is padding."""
    real = index != PAD_INDEX
    out = np.full(index.shape, fill, dtype=values.dtype)
    out[real] = values[index[real] - offset]
    return out


def merge_topk(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-block top-k lists ``(sq_dist, global_index, values)`` into one top-k.

    Keeps, per row, the ``k`` smallest entries in (sq_dist, index) order, so the result
    does not depend on how the reference rows were split or in which order the lists are
    merged (the operation is associative and commutative).
    """
    if len(parts) == 1:
        d2, idx, val = parts[0]
        return d2[:, :k], idx[:, :k], val[:, :k]
    d2 = np.concatenate([p[0] for p in parts], axis=1)
    idx = np.concatenate([p[1] for p in parts], axis=1)
    val = np.concatenate([p[2] for p in parts], axis=1)
    order = np.lexsort((idx, d2), axis=1)[:, :k]
    take = np.take_along_axis
    return take(d2, order, axis=1), take(idx, order, axis=1), take(val, order, axis=1)
