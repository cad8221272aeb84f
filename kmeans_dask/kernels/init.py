"""Pure kernels of the initialisation: counter-based row draws, k-means|| rounds, and the
driver-side weighted k-means++ and Lloyd that reduce the k-means|| candidates.

numpy and numba only; no Dask, no I/O. Inputs are validated upstream.
"""

from __future__ import annotations

import numpy as np

from .lloyd import CentreSet, assign, farthest_points, lloyd_partials, m_step, select_farthest

__all__ = [
    "kmeans_parallel_sample",
    "kmeans_parallel_update",
    "kmeanspp",
    "weighted_lloyd",
    "weighted_topk_keys",
]


# --------------------------------------------------------------------------- k-means||


def kmeans_parallel_update(
    X: np.ndarray,
    w: np.ndarray | None,
    d2: np.ndarray | None,
    nearest: np.ndarray | None,
    new: CentreSet,
    first_new_index: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Update each row's cost against the centres added in the last k-means|| round.

    Parameters
    ----------
    d2, nearest : ndarray of shape (n,) or None
        Current exact squared distance to, and index of, the nearest candidate so far
        (None before the first round).
    new : CentreSet
        Only the candidates added in the previous round.
    first_new_index : int
        Global candidate index of ``new.centres[0]``.

    Returns
    -------
    d2, nearest : new arrays (inputs are not modified, so a retried task is harmless).
    """
    lab, dist, _ = assign(X, new)
    lab = lab.astype(np.int64) + first_new_index
    if d2 is None:
        return dist, lab
    better = dist < d2
    return np.where(better, dist, d2), np.where(better, lab, nearest)


def kmeans_parallel_sample(
    X: np.ndarray,
    w: np.ndarray | None,
    d2: np.ndarray,
    u: np.ndarray,
    oversampling: float,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Local cost and the rows that may be sampled in a k-means|| round.

    A row is sampled iff ``u < l * w * d2 / phi`` with ``phi`` the global cost, i.e. iff
    ``t = l * w * d2 / u > phi``. The global ``phi`` is only known after this pass, but it
    is at least the local cost, so the rows with ``t > phi_local`` are a superset
    (expected size at most ``l`` per chunk) that the driver filters once ``phi`` is reduced:
    one pass per round instead of two.

    Returns
    -------
    phi_local : float
    t : ndarray of the superset's thresholds
    local_index : ndarray of the superset's row positions in this chunk
    rows : ndarray of the superset's rows
    """
    cost = d2 if w is None else d2 * w
    phi_local = float(cost.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        t = oversampling * cost / u
    pick = np.flatnonzero((cost > 0) & (t > phi_local))
    return phi_local, t[pick], pick, X[pick].copy()


def weighted_topk_keys(
    w: np.ndarray | None, u: np.ndarray, k: int, offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Efraimidis-Spirakis keys ``u ** (1 / w)``: the k largest over all chunks are a
    weighted sample without replacement. Returns this chunk's top-k (keys, global index)."""
    with np.errstate(divide="ignore"):
        keys = u if w is None else np.where(w > 0, u ** (1.0 / np.where(w > 0, w, 1)), -1.0)
    k = min(k, keys.shape[0])
    top = np.argpartition(-keys, k - 1)[:k] if k else np.empty(0, dtype=np.int64)
    return keys[top], top + offset


# --------------------------------------------------------------------------- driver-side


def kmeanspp(
    X: np.ndarray,
    k: int,
    rng: np.random.Generator,
    w: np.ndarray | None = None,
    n_local_trials: int | None = None,
) -> np.ndarray:
    """Greedy weighted k-means++ seeding (Arthur & Vassilvitskii 2007) on in-memory rows.

    The first centre is drawn with probability proportional to the weight; every next one
    is the best (lowest resulting weighted cost) of ``n_local_trials`` draws proportional to
    ``w * D(x)^2``, as scikit-learn does (``2 + log(k)`` trials by default).

    Returns
    -------
    indices : ndarray of shape (k,)
        Row indices of the chosen centres.
    """
    n = X.shape[0]
    wv = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(k))
    X64 = np.asarray(X, dtype=np.float64)
    idx = np.empty(k, dtype=np.int64)
    idx[0] = rng.choice(n, p=wv / wv.sum())
    d2 = ((X64 - X64[idx[0]]) ** 2).sum(axis=1)
    pot = float(wv @ d2)
    for c in range(1, k):
        if pot <= 0:
            # every remaining row coincides with a chosen centre: take an unused row,
            # one with positive weight if any (a zero-weight row never becomes a centre)
            unused = np.setdiff1d(np.flatnonzero(wv > 0), idx[:c])
            if not unused.size:
                unused = np.setdiff1d(np.arange(n), idx[:c])
            idx[c] = unused[0] if unused.size else idx[0]
            continue
        cum = np.cumsum(wv * d2)
        r = rng.uniform(size=n_local_trials) * cum[-1]
        cand = np.minimum(np.searchsorted(cum, r, side="right"), n - 1)
        dc = ((X64[None, :, :] - X64[cand][:, None, :]) ** 2).sum(axis=2)
        np.minimum(dc, d2[None, :], out=dc)
        pots = dc @ wv
        best = int(np.argmin(pots))
        idx[c] = cand[best]
        d2 = dc[best]
        pot = float(pots[best])
    return idx


def weighted_lloyd(
    X: np.ndarray,
    w: np.ndarray,
    centres: np.ndarray,
    max_iter: int = 300,
    tol: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Weighted Lloyd iterations on in-memory rows (the k-means|| candidate reduction).

    Empty clusters take the farthest rows. Returns the final centres and their exact
    weighted cost.
    """
    X = np.ascontiguousarray(X)
    ref = np.average(X, axis=0, weights=w)
    C = np.asarray(centres, dtype=X.dtype).copy()
    for _ in range(max_iter):
        cs = CentreSet(C, ref)
        sums, wsum, _ = lloyd_partials(X, cs, w, exact=False)  # the cost comes at the end

        def farthest(m: int, cs: CentreSet = cs) -> tuple:
            return select_farthest([farthest_points(X, cs, w, 0, m)], m)

        C, shift, _ = m_step(C, sums, wsum, farthest)
        if shift <= tol:
            break
    _, _, cost = assign(X, CentreSet(C, ref), w)
    return C, cost
