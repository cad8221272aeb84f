"""Initial centres over row blocks: k-means|| (Bahmani et al. 2012), k-means++ on a sample,
random rows, or given centres.

k-means|| follows the paper (and Spark), not dask-ml's shortcut:

* the first centre is a random row (probability proportional to its weight), drawn with a
  seeded counter-based generator so that it does not depend on the chunking;
* every row keeps its current cost ``d2(x)`` (and nearest candidate) in per-block state on
  the workers; a round compares rows only with the candidates added in the previous round;
* each round samples every row independently with probability ``min(1, l * w * d2 / phi)``,
  ``l = oversampling_factor * k``, and ``phi`` is reduced in the same pass (see
  :func:`init_kernels.kmeans_parallel_sample`);
* one last pass weights every candidate by the total weight of the rows nearest to it;
* the weighted candidates (a few hundred rows) are reduced to ``k`` centres on the caller
  with weighted k-means++ then weighted Lloyd, over several seeded trials, keeping the lowest
  weighted cost.

Passes over the data: ``init_rounds + 1`` (plus one task on a single block for the first
centre).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..kernels import init as init_kernels
from ..kernels import lloyd as kernels
from ..kernels.streams import DriverStream, Stream, kmeans_parallel_round, row_uniforms
from .blocks import Block, BlockSet

__all__ = [
    "CandidatePool",
    "InitResult",
    "candidate_pool",
    "kmeans_parallel",
    "kmeanspp_sample",
    "random_rows",
]

logger = logging.getLogger(__name__)

#: Seeded trials of the candidate reduction (cheap: the candidates are few).
N_REDUCE_TRIALS = 10


@dataclass(frozen=True)
class InitResult:
    """Initial centres and how they were obtained."""

    centres: np.ndarray
    n_candidates: int
    n_passes: int
    candidate_cost: float


# --------------------------------------------------------------------------- block tasks


def _state(prev: tuple | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    # a round's result is ((d2, nearest), small); before the first round there is none
    return (None, None) if prev is None else prev[0]


def _round(
    block: Block,
    prev: tuple | None,
    offset: int,
    new: kernels.CentreSet | None,
    first_new_index: int,
    seed: int,
    stream: int,
    oversampling: float,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple]:
    """Update the block's cost against last round's candidates, then sample this round."""
    d2, nearest = _state(prev)
    if new is not None:  # None when the previous round added no candidate
        d2, nearest = init_kernels.kmeans_parallel_update(
            block.X, block.w, d2, nearest, new, first_new_index
        )
    u = row_uniforms(seed, stream, offset, block.X.shape[0])
    phi, t, local, rows = init_kernels.kmeans_parallel_sample(block.X, block.w, d2, u, oversampling)
    return (d2, nearest), (phi, t, local + offset, rows)


def _small(result: tuple) -> tuple:
    return result[1]


def _candidate_weights(
    block: Block, prev: tuple, new: kernels.CentreSet | None, first_new_index: int, m: int
) -> np.ndarray:
    d2, nearest = _state(prev)
    if new is not None:
        d2, nearest = init_kernels.kmeans_parallel_update(
            block.X, block.w, d2, nearest, new, first_new_index
        )
    return np.bincount(nearest, weights=block.w, minlength=m).astype(np.float64)


def _pick_weighted(block: Block, target: float) -> int:
    cum = np.cumsum(block.w)
    return int(min(np.searchsorted(cum, target, side="right"), block.X.shape[0] - 1))


def _topk_keys(block: Block, offset: int, seed: int, k: int) -> tuple:
    u = row_uniforms(seed, Stream.RANDOM_ROWS, offset, block.X.shape[0])
    return init_kernels.weighted_topk_keys(block.w, u, k, offset)


def _bernoulli_sample(
    block: Block, offset: int, seed: int, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    u = row_uniforms(seed, Stream.KMEANSPP_SAMPLE, offset, block.X.shape[0])
    pick = np.flatnonzero(u < rate)
    w = np.ones(pick.size) if block.w is None else block.w[pick]
    return block.X[pick].copy(), w


# --------------------------------------------------------------------------- helpers


def _first_centre(bs: BlockSet, seed: int) -> np.ndarray:
    """A random row, with probability proportional to its weight."""
    u = float(row_uniforms(seed, Stream.FIRST_CENTRE, 0, 1)[0])
    if not bs.weighted:
        idx = min(int(u * bs.n_samples), bs.n_samples - 1)
        return bs.take_rows(np.array([idx]))
    wsums = np.array([s.weight_sum for s in bs.summaries])
    cum = np.cumsum(wsums)
    target = u * cum[-1]
    b = int(min(np.searchsorted(cum, target, side="right"), len(cum) - 1))
    while wsums[b] <= 0:  # rounding landed on an all-zero-weight block
        b -= 1
    before = cum[b - 1] if b > 0 else 0.0
    local = bs.map_on([b], _pick_weighted, [target - before])[0]
    return bs.take_rows(np.array([bs.offsets[b] + local]))


def reduce_candidates(
    cand: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator, n_trials: int
) -> tuple[np.ndarray, float]:
    """Weighted k-means++ then weighted Lloyd on the candidates, best of ``n_trials``."""
    best_c, best_cost = None, np.inf
    for _ in range(n_trials):
        idx = init_kernels.kmeanspp(cand, k, rng, weights)
        c, cost = init_kernels.weighted_lloyd(cand, weights, cand[idx], max_iter=300)
        if cost < best_cost:
            best_c, best_cost = c, cost
    return best_c, float(best_cost)


# --------------------------------------------------------------------------- public


def kmeans_parallel(
    bs: BlockSet,
    k: int,
    seed: int,
    oversampling_factor: float = 2.0,
    init_rounds: int = 5,
    reference: np.ndarray | None = None,
    n_trials: int = N_REDUCE_TRIALS,
) -> InitResult:
    """k-means|| initial centres (inputs already validated).

    Parameters
    ----------
    bs : BlockSet
        The persisted data.
    k : int
        Number of centres.
    seed : int
        Seed of every random choice (row draws are counter-based on the global row index).
    oversampling_factor : float
        ``l = oversampling_factor * k`` rows are sampled per round in expectation.
    init_rounds : int
        Sampling rounds. More rounds may run (up to twice as many) if fewer than ``k``
        candidates were found while some cost remains.
    reference : ndarray of shape (d,), optional
        Reference point for the shifted distance products (the data mean).
    n_trials : int
        Seeded trials of the candidate reduction.
    """
    pool = candidate_pool(bs, k, seed, oversampling_factor, init_rounds, reference)
    return pool.reduce(k, seed, bs.dtype, n_trials)


@dataclass(frozen=True)
class CandidatePool:
    """Weighted k-means|| candidates: a few hundred rows standing for the whole data.

    One pool, sampled for the largest K, can seed every K of a sweep: each K reduces it
    on the caller (weighted k-means++ then weighted Lloyd), with no further pass.
    """

    candidates: np.ndarray
    weights: np.ndarray
    n_passes: int
    n_rounds: int

    def reduce(
        self, k: int, seed: int, dtype: np.dtype, n_trials: int = N_REDUCE_TRIALS
    ) -> InitResult:
        """``k`` centres from the pool, best weighted cost of ``n_trials`` seeded trials."""
        rng = np.random.default_rng([seed, int(DriverStream.CANDIDATE_REDUCTION), k])
        centres, cost = reduce_candidates(self.candidates, self.weights, k, rng, n_trials)
        logger.debug(
            "k-means|| init (K=%d): %d candidates from %d rounds (%d passes), weighted cost %.6g",
            k,
            len(self.candidates),
            self.n_rounds,
            self.n_passes,
            cost,
        )
        return InitResult(centres.astype(dtype), len(self.candidates), self.n_passes, cost)


def candidate_pool(
    bs: BlockSet,
    k: int,
    seed: int,
    oversampling_factor: float = 2.0,
    init_rounds: int = 5,
    reference: np.ndarray | None = None,
) -> CandidatePool:
    """The k-means|| sampling rounds and the candidate weighting pass (see
    :func:`kmeans_parallel`); ``init_rounds + 1`` passes over the data."""
    ref = np.zeros(bs.n_features) if reference is None else reference
    l_factor = float(oversampling_factor) * k
    first = _first_centre(bs, seed)
    cands: list[np.ndarray] = [first]
    n_cand = 1
    new: kernels.CentreSet | None = kernels.CentreSet(first, ref)
    new_start = 0
    states: list = [None] * bs.n_blocks
    rnd = 0
    phi = np.inf
    while rnd < init_rounds or (n_cand < k and phi > 0 and rnd < 2 * init_rounds):
        rnd += 1
        results = bs.map_keep(
            _round,
            states,
            bs.offsets,
            new=new,
            first_new_index=new_start,
            seed=seed,
            stream=kmeans_parallel_round(rnd),
            oversampling=l_factor,
        )
        small = bs.gather(bs.map_values(_small, results))
        if rnd > 1:
            bs.release(states)
        states = results
        phi = float(sum(s[0] for s in small))
        picked_rows, picked_idx = [], []
        for _, t, gidx, rows in small:
            keep = t > phi
            picked_rows.append(rows[keep])
            picked_idx.append(gidx[keep])
        gidx_all = np.concatenate(picked_idx)
        order = np.argsort(gidx_all, kind="stable")
        added = np.concatenate(picked_rows)[order]
        logger.debug("k-means|| round %d: phi=%.6g, %d candidates added", rnd, phi, len(added))
        new_start = n_cand
        n_cand += len(added)
        cands.append(added)
        new = kernels.CentreSet(added, ref) if len(added) else None
        if phi <= 0:
            break
    partial_weights = bs.gather(
        bs.map_keep(_candidate_weights, states, new=new, first_new_index=new_start, m=n_cand)
    )
    weights = np.sum(partial_weights, axis=0)
    passes = rnd + 1
    bs.release(states)
    cand = np.ascontiguousarray(np.concatenate(cands))
    return CandidatePool(cand, weights, passes, rnd)


def kmeanspp_sample(bs: BlockSet, k: int, seed: int, sample_size: int | None = None) -> InitResult:
    """Weighted k-means++ (greedy, ``2 + log k`` local trials) on a seeded uniform row sample."""
    if sample_size is None:
        sample_size = max(10_000, 50 * k)
    rate = min(1.0, sample_size / bs.n_samples)
    parts = bs.map(_bernoulli_sample, bs.offsets, seed=seed, rate=rate)
    X = np.concatenate([p[0] for p in parts])
    w = np.concatenate([p[1] for p in parts])
    if X.shape[0] < k:  # tiny data: take every row
        parts = bs.map(_bernoulli_sample, bs.offsets, seed=seed, rate=1.0)
        X = np.concatenate([p[0] for p in parts])
        w = np.concatenate([p[1] for p in parts])
    rng = np.random.default_rng([seed, int(DriverStream.KMEANSPP)])
    idx = init_kernels.kmeanspp(X, k, rng, w)
    return InitResult(np.ascontiguousarray(X[idx]), X.shape[0], 1, float("nan"))


def random_rows(bs: BlockSet, k: int, seed: int) -> InitResult:
    """``k`` distinct rows drawn without replacement (probability proportional to weight)."""
    parts = bs.map(_topk_keys, bs.offsets, seed=seed, k=k)
    keys = np.concatenate([p[0] for p in parts])
    gidx = np.concatenate([p[1] for p in parts])
    top = np.lexsort((gidx, -keys))[:k]
    return InitResult(bs.take_rows(gidx[top]), k, 1, float("nan"))
