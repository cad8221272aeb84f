"""Mini-batch k-means over row blocks: a seeded sample pool, then scikit-learn's
MiniBatchKMeans steps on the caller.

Drawing every batch from the blocks would cost a round trip to the workers per step
(thousands of steps), and in streaming mode a read of the data per step. Instead one pass
draws a **sample pool**: every row is kept independently with probability ``rate``, decided
by its counter-based uniform of :data:`Stream.MINIBATCH_SAMPLE` (so the pool is the same for
any chunking and any number of workers), and the kept rows come back to the caller in
global row order. The batches are then drawn from the pool, with replacement and in
proportion to the row weights, exactly as scikit-learn draws them from the whole data.

The pool holds at most ``kmeans_dask.minibatch-pool-bytes`` (dask config, default 64 MiB:
e.g. 524,288 rows of 32 float32 features), and never fewer rows than the initialisation
needs; data that fits in the budget is taken whole, and then the batches follow
scikit-learn's sampling distribution exactly. A larger pool only matters when the steps
would otherwise reuse its rows many times: k-means on a uniform sample of ``m`` rows differs
from k-means on all of them by ``O(k d / m)`` in relative inertia (under 0.1% here).

Initialisation, like scikit-learn's ``init_size``: k-means++ or random rows on a subset of
``3 * batch_size`` pool rows (at least ``3 * k``). ``init='k-means||'`` runs k-means|| on the
whole data (``init_rounds + 1`` passes, none when a K sweep shares its candidate pool).
With ``n_init > 1``, each initialisation gets a whole run on the pool and the lowest pool
inertia is kept (scikit-learn compares only the initial centres; the runs cost no pass).

After the steps, unless ``refine=False``, Lloyd iterations on the pool (in memory, no pass
over the data) take the centres to a fixed point of the pool: scikit-learn's per-centre
learning rate freezes the centres early, and a run can stop well above Lloyd's inertia.

Passes over the data: one for the pool (plus k-means||'s); the caller then makes one full
pass for every row's label and the exact inertia.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import dask
import numpy as np
from dask.utils import parse_bytes
from threadpoolctl import threadpool_limits

from ..kernels import init as init_kernels
from ..kernels.lloyd import CentreSet, assign
from ..kernels.minibatch import MiniBatchResult, minibatch_kmeans, refine_lloyd
from ..kernels.streams import DriverStream
from .blocks import BlockSet
from .lloyd import IterationStats
from .pool import SamplePool

__all__ = [
    "POOL_BYTES_KEY",
    "MiniBatchFit",
    "SamplePool",
    "minibatch_fit",
    "pool_budget_rows",
    "pool_rate",
    "sample_pool",
]

logger = logging.getLogger(__name__)

#: dask config key: the most bytes of rows the sample pool holds on the caller
POOL_BYTES_KEY = "kmeans_dask.minibatch-pool-bytes"
_DEFAULT_POOL_BYTES = "64MiB"


@dataclass
class MiniBatchFit:
    """Centres after the mini-batch steps, and how they were found (no labels yet)."""

    centres: np.ndarray
    n_steps: int
    n_iter: int
    converged: bool
    history: list[IterationStats]
    init_info: dict[str, Any]


def pool_budget_rows(n_features: int, dtype: np.dtype) -> int:
    """Rows of ``n_features`` in ``dtype`` within ``kmeans_dask.minibatch-pool-bytes``."""
    value = dask.config.get(POOL_BYTES_KEY, _DEFAULT_POOL_BYTES)
    budget = int(parse_bytes(value)) if isinstance(value, str) else int(value)
    return max(1, budget // (n_features * np.dtype(dtype).itemsize))


def pool_rate(
    n_samples: int, n_features: int, dtype: np.dtype, n_clusters: int, batch_size: int
) -> float:
    """The probability of keeping a row in the sample pool of a mini-batch fit: the pool
    budget's rows (:func:`pool_budget_rows`), and never fewer than the initialisation's
    ``3 * batch_size`` (at least ``3 * n_clusters``), over ``n_samples``.

    A job that streams its data passes ``PoolRequest(seed, pool_rate(...))`` to
    :meth:`BlockSet.from_recipes` so that the pool is drawn in the summary pass.
    """
    b = min(batch_size, n_samples)
    init_size = min(max(3 * b, 3 * n_clusters), n_samples)
    rows = max(pool_budget_rows(n_features, dtype), init_size)
    return min(1.0, rows / max(1, n_samples))


def sample_pool(bs: BlockSet, seed: int, rate: float) -> SamplePool:
    """The rows kept at ``rate`` (:meth:`BlockSet.sample_rows`: one pass, none if drawn
    before). Falls back to every row if the draw has fewer than half the expected rows
    ``rate * n_samples``, which only happens on tiny pools."""
    pool = bs.sample_rows(seed, rate)
    if rate < 1.0 and pool.X.shape[0] < rate * bs.n_samples / 2:
        whole = bs.sample_rows(seed, 1.0)
        return replace(whole, n_passes=pool.n_passes + whole.n_passes)
    return pool


def _subset(pool: SamplePool, size: int, rng: np.random.Generator) -> tuple:
    idx = np.sort(rng.choice(pool.X.shape[0], size=min(size, pool.X.shape[0]), replace=False))
    w = np.ones(idx.size) if pool.w is None else pool.w[idx]
    return pool.X[idx], w


def _pool_init(
    pool: SamplePool, k: int, method: str, init_size: int, rng: np.random.Generator
) -> np.ndarray:
    """k-means++ or weighted random rows on a random ``init_size`` subset of the pool."""
    X, w = _subset(pool, init_size, rng)
    if method == "k-means++":
        idx = init_kernels.kmeanspp(X, k, rng, w)
    else:  # 'random': k distinct rows, probability proportional to weight
        keys, idx = init_kernels.weighted_topk_keys(w, rng.random(X.shape[0]), k, 0)
        idx = idx[np.lexsort((idx, -keys))]
    return np.ascontiguousarray(X[idx])


def _candidates(
    pool: SamplePool,
    centres: np.ndarray | None,
    k: int,
    method: str,
    n_init: int,
    seed: int,
    init_size: int,
    full_init: Callable[[int], dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """The ``n_init`` initial centres (dicts as :func:`minibatch_fit` records them), or the
    given ``centres``."""
    if centres is not None:
        return [
            {"method": "array", "centres": centres, "n_candidates": 0, "n_passes": 0, "seed": seed}
        ]
    seeds = np.random.SeedSequence(seed).generate_state(n_init, dtype=np.uint64)
    out = []
    for run in range(n_init):
        run_seed = int(seeds[run]) if n_init > 1 else seed
        if method == "k-means||" and full_init is not None:
            out.append({**full_init(run_seed), "seed": run_seed})
            continue
        rng = np.random.default_rng([run_seed, int(DriverStream.MINIBATCH_INIT), 1])
        centres = _pool_init(pool, k, method, init_size, rng)
        n_cand = min(init_size, pool.X.shape[0])
        out.append(
            {"method": method, "centres": centres, "n_candidates": n_cand, "n_passes": 0}
            | {"seed": run_seed}
        )
    return out


def minibatch_fit(
    bs: BlockSet,
    *,
    n_clusters: int,
    init: str,
    centres: np.ndarray | None,
    n_init: int,
    seed: int,
    batch_size: int,
    max_iter: int,
    tol_abs: float,
    max_no_improvement: int | None,
    reassignment_ratio: float,
    refine: bool = True,
    full_init: Callable[[int], dict[str, Any]] | None = None,
) -> MiniBatchFit:
    """Mini-batch k-means centres on row blocks (inputs and parameters already validated).

    Each of the ``n_init`` runs (one for explicit centres) initialises, steps and refines on
    the pool; the run with the lowest inertia on the whole pool is kept (scikit-learn only
    compares the initial centres, on ``init_size`` rows; whole runs on the pool cost no
    pass over the data).

    Parameters
    ----------
    n_clusters, n_init, seed, batch_size, max_iter, max_no_improvement, refine
        As in :class:`kmeans_dask.KMeans` (and ``reassignment_ratio``).
    init, centres : str, ndarray or None
        ``'k-means++'``/``'random'`` (on the pool), ``'k-means||'`` (``full_init``), or
        ``'array'`` with the ``centres``.
    tol_abs : float
        Tolerance on a step's (and a refining iteration's) squared centre shift.
    full_init : callable, optional
        ``full_init(seed)`` -> dict with ``centres``, ``n_candidates``, ``n_passes``: the
        whole-data initialisation of ``init='k-means||'``.
    """
    n = bs.n_samples
    b = min(batch_size, n)
    init_size = min(max(3 * b, 3 * n_clusters), n)
    t0 = time.perf_counter()
    rate = pool_rate(n, bs.n_features, bs.dtype, n_clusters, batch_size)
    pool = sample_pool(bs, seed, rate)
    t_pool = time.perf_counter()
    cands = _candidates(pool, centres, n_clusters, init, n_init, seed, init_size, full_init)
    t_init = time.perf_counter()
    # the steps' reference point is the pool's mean: the same for any chunking (the data
    # mean's last bits depend on the block moments' merge order)
    ref = pool.X.mean(axis=0, dtype=np.float64)
    settings = {
        "batch_size": b,
        "n_steps": max_iter * n // b,
        "n_samples": n,
        "tol_abs": tol_abs,
        "max_no_improvement": max_no_improvement,
        "reassignment_ratio": reassignment_ratio,
        "reference": ref,
    }
    runs = [_run(pool, c, settings, refine, max_iter) for c in cands]
    pool_inertias = [r[3] for r in runs]
    kept = int(np.argmin(pool_inertias))
    res, C, converged, _, info = runs[kept]
    info.update(
        seconds=t_init - t0,
        pool_rows=int(pool.X.shape[0]),
        pool_passes=pool.n_passes,
        pool_seconds=t_pool - t0,
        pool_inertias=pool_inertias,
        n_steps=res.n_steps,
        stop=res.stop,
        runs_seconds=time.perf_counter() - t_init,
    )
    n_iter = math.ceil(res.n_steps * b / n)
    _log(res, b, n_iter, info)
    return MiniBatchFit(C, res.n_steps, n_iter, converged, _history(res), info)


def _run(
    pool: SamplePool, cand: dict[str, Any], settings: dict[str, Any], refine: bool, max_iter: int
) -> tuple[MiniBatchResult, np.ndarray, bool, float, dict[str, Any]]:
    """One run from a candidate: mini-batch steps, refinement, the inertia of the pool.

    Returns ``(steps result, centres, converged, pool inertia, the candidate's record)``.
    """
    info = dict(cand)
    centres = np.asarray(info.pop("centres"), dtype=pool.X.dtype)
    rng = np.random.default_rng([info.pop("seed"), int(DriverStream.MINIBATCH_STEPS)])
    ref = settings["reference"]
    # one BLAS thread for the small products (a batch, or 1,024 pool rows at a time in the
    # refining kernel), as scikit-learn's loop does: with two threads on busy cores they cost
    # 3-16x more (measured here; the workers already run one thread each)
    with threadpool_limits(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        res = minibatch_kmeans(pool.X, pool.w, centres, rng=rng, **settings)
        t1 = time.perf_counter()
        C, r_iter, converged = res.centres, 0, res.stop is not None
        if refine:
            # the pool's slabs on this process's cores (the workers idle meanwhile); the
            # kernel releases the GIL, and the slabs' partials add up in a fixed order
            with ThreadPoolExecutor(max(1, min(2, os.cpu_count() or 1))) as threads:
                C, r_iter, converged = refine_lloyd(
                    pool.X, pool.w, C, settings["tol_abs"], max_iter, ref, threads.map
                )
        t2 = time.perf_counter()
        inertia = assign(pool.X, CentreSet(C, ref), pool.w)[2]
    info.update(steps_seconds=t1 - t0, refine_iter=r_iter, refine_seconds=t2 - t1)
    return res, C, converged, float(inertia), info


def _log(res: MiniBatchResult, batch: int, n_iter: int, info: dict[str, Any]) -> None:
    logger.debug(
        "MiniBatch: %d step(s) of %d rows (%d pass(es) over the data's worth), %s; pool of "
        "%d rows (drawn in %d pass(es) of this fit); %.3g s in steps; %d refining Lloyd "
        "iteration(s) on the pool",
        res.n_steps,
        batch,
        n_iter,
        "stopped: " + res.stop if res.stop else "max_iter reached",
        info["pool_rows"],
        info["pool_passes"],
        info["steps_seconds"],
        info["refine_iter"],
    )


def _history(res: MiniBatchResult) -> list[IterationStats]:
    """One record per step: the batch's inertia (against the centres it started from)."""
    return [
        IterationStats(i + 1, float(inertia), float(shift), int(n_re), float(sec))
        for i, (inertia, shift, n_re, sec) in enumerate(
            zip(res.batch_inertia, res.center_shift, res.n_reassigned, res.seconds, strict=True)
        )
    ]
