"""The internal fit API: one function that fits k-means on persisted blocks.

``KMeans.fit`` and ``sweep_k`` both call :func:`fit_blocks` with validated
:class:`FitParams`; it runs the initialisation (k-means||, k-means++ on a sample, random rows
or given centres) and Lloyd ``n_init`` times, or mini-batch k-means
(:mod:`.minibatch`) and one assignment pass, and returns a :class:`FitResult` that the
estimators wrap. Nobody reaches into another object's private attributes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ..kernels.bounds import BoundsState
from .blocks import BlockSet
from .init import CandidatePool, kmeans_parallel, kmeanspp_sample, random_rows
from .lloyd import IterationStats, assign_blocks, lloyd
from .lockstep import Lockstep
from .minibatch import minibatch_fit

__all__ = ["FitParams", "FitResult", "fit_blocks", "use_bounds"]

logger = logging.getLogger(__name__)

#: the initialisation methods by name (an explicit array of centres is ``"array"``)
INIT_METHODS = ("k-means||", "k-means++", "random")
#: the algorithms by name
ALGORITHMS = ("lloyd", "bounds", "auto", "minibatch")
#: fewest clusters from which ``algorithm="auto"`` prunes with bounds, per dtype (see
#: :func:`use_bounds`; float32: to convergence the adaptive bounds took 0.98x / 0.96x plain's
#: Lloyd time at k = 16 / 64 on 2M x 32: no gain worth the bounds' memory)
AUTO_BOUNDS_MIN_K = {"float64": 16, "float32": 256}


@dataclass(frozen=True)
class FitParams:
    """Validated fit parameters (see :class:`kmeans_dask.KMeans` for their meaning).

    ``init`` is one of :data:`INIT_METHODS`, or ``"array"`` with ``centres`` given (in the
    data's dtype, shape ``(n_clusters, n_features)``). ``seed`` is an int. ``algorithm`` is
    one of :data:`ALGORITHMS`; the fields after it are used by ``"minibatch"`` only.
    """

    n_clusters: int
    init: str
    oversampling_factor: float
    init_rounds: int
    max_iter: int
    tol: float
    n_init: int
    seed: int
    centres: np.ndarray | None = None
    algorithm: str = "lloyd"
    batch_size: int = 1024
    max_no_improvement: int | None = 10
    reassignment_ratio: float = 0.01
    refine: bool = True


@dataclass
class FitResult:
    """The kept run of :func:`fit_blocks`.

    ``labels`` are per-block label arrays left on the workers (one handle per block of the
    BlockSet); the caller releases them when done. ``reference`` is the data mean the
    distance products are shifted by.
    """

    centres: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    history: list[IterationStats]
    init_info: dict[str, Any]
    labels: list
    reference: np.ndarray
    n_distinct: int
    run_inertias: list[float] = field(default_factory=list)
    n_steps: int | None = None
    sizes: np.ndarray | None = None  # rows per cluster (from the final assignment pass)


def fit_blocks(
    bs: BlockSet,
    params: FitParams,
    init_pool: CandidatePool | None = None,
    lockstep: Lockstep | None = None,
) -> FitResult:
    """Fit k-means on persisted blocks (inputs and parameters already validated).

    Parameters
    ----------
    bs : BlockSet
    params : FitParams
    init_pool : CandidatePool, optional
        k-means|| candidates shared by several fits (a K sweep): each fit reduces the pool
        instead of sampling its own.
    lockstep : Lockstep, optional
        Run the Lloyd E-steps together with the other fits of a K sweep (same results).

    Returns
    -------
    FitResult
        The run with the lowest inertia of ``n_init`` runs (one run for explicit centres);
        with ``algorithm="minibatch"``, the one mini-batch run from the best of ``n_init``
        initialisations.
    """
    if bs.n_samples < params.n_clusters:
        raise InvalidParameterError(
            f"n_samples={bs.n_samples} should be >= n_clusters={params.n_clusters}: X has "
            f"fewer rows than clusters."
        )
    n, mean, m2 = bs.moments()
    tol_abs = float(np.mean(m2 / n) * params.tol) if params.tol else 0.0
    if params.algorithm == "minibatch":
        return _fit_minibatch(bs, params, mean, tol_abs, init_pool)
    n_init = 1 if params.centres is not None else params.n_init
    seeds = np.random.SeedSequence(params.seed).generate_state(n_init, dtype=np.uint64)
    best: FitResult | None = None
    inertias: list[float] = []
    for run in range(n_init):
        run_seed = int(seeds[run]) if n_init > 1 else params.seed
        t0 = time.perf_counter()
        init = _initial_centres(bs, params, run_seed, mean, init_pool)
        init["seconds"] = time.perf_counter() - t0
        res = lloyd(
            bs,
            init.pop("centres"),
            max_iter=params.max_iter,
            tol_abs=tol_abs,
            reference=mean,
            bounds=use_bounds(params.algorithm, params.n_clusters, bs.n_features, bs.dtype),
            lockstep=lockstep,
        )
        labels, inertia = assign_blocks(bs, res.centres, mean)
        inertias.append(inertia)
        logger.debug(
            "KMeans run %d/%d: inertia %.6g after %d iteration(s)%s",
            run + 1,
            n_init,
            inertia,
            res.n_iter,
            "" if res.converged else " (max_iter reached)",
        )
        if best is not None and inertia >= best.inertia:
            bs.release(labels)
            continue
        if best is not None:
            bs.release(best.labels)
        best = FitResult(
            res.centres, inertia, res.n_iter, res.converged, res.history, init, labels, mean, 0
        )
    assert best is not None  # n_init >= 1
    best.run_inertias = inertias
    best.sizes = _cluster_sizes(bs, best.labels, params.n_clusters)
    best.n_distinct = int(np.count_nonzero(best.sizes))
    return best


def use_bounds(algorithm: str, n_clusters: int, n_features: int, dtype: np.dtype) -> bool:
    """Whether Lloyd prunes its E-steps with bounds (the same results either way).

    ``'bounds'``: always. ``'auto'``: from :data:`AUTO_BOUNDS_MIN_K` clusters on in float64
    (16: to convergence on 2M x 32 blobs, ``benchmarks/bench_kmeans.py --converge``, the
    adaptive grouped bounds took 0.60x / 0.60x plain's Lloyd time at k = 16 / 64, 0.54x at
    k = 256 on 500k rows), in float32 from k = 256 (0.98x / 0.96x at k = 16 / 64: its
    cheaper product and coarser rounding leave the bounds less to save), and only when
    the per-row bounds (:meth:`BoundsState.bytes_per_row`) are at most
    half the bytes of a row of data, so keeping them never adds more than half the blocks'
    memory.
    """
    if algorithm == "bounds":
        return True
    if algorithm != "auto":
        return False
    dt = np.dtype(dtype)
    row_bytes = n_features * dt.itemsize
    min_k = AUTO_BOUNDS_MIN_K.get(dt.name)
    if min_k is None:
        return False
    return n_clusters >= min_k and 2 * BoundsState.bytes_per_row(n_clusters) <= row_bytes


def _fit_minibatch(
    bs: BlockSet,
    params: FitParams,
    mean: np.ndarray,
    tol_abs: float,
    init_pool: CandidatePool | None,
) -> FitResult:
    """Mini-batch centres, then one pass for the labels and the exact inertia."""

    def full_init(seed: int) -> dict[str, Any]:
        return _initial_centres(bs, params, seed, mean, init_pool)

    mb = minibatch_fit(
        bs,
        n_clusters=params.n_clusters,
        init=params.init,
        centres=params.centres,
        n_init=params.n_init,
        seed=params.seed,
        batch_size=params.batch_size,
        max_iter=params.max_iter,
        tol_abs=tol_abs,
        max_no_improvement=params.max_no_improvement,
        reassignment_ratio=params.reassignment_ratio,
        refine=params.refine,
        full_init=full_init,
    )
    labels, inertia = assign_blocks(bs, mb.centres, mean)
    logger.debug("KMeans (minibatch): inertia %.6g after %d step(s)", inertia, mb.n_steps)
    result = FitResult(
        mb.centres, inertia, mb.n_iter, mb.converged, mb.history, mb.init_info, labels, mean, 0
    )
    result.run_inertias = [inertia]
    result.n_steps = mb.n_steps
    result.sizes = _cluster_sizes(bs, labels, params.n_clusters)
    result.n_distinct = int(np.count_nonzero(result.sizes))
    return result


def _initial_centres(
    bs: BlockSet,
    params: FitParams,
    seed: int,
    mean: np.ndarray,
    pool: CandidatePool | None,
) -> dict[str, Any]:
    if params.centres is not None:
        return {"method": "array", "centres": params.centres, "n_candidates": 0, "n_passes": 0}
    k = params.n_clusters
    if params.init == "k-means||" and pool is not None:
        r = pool.reduce(k, seed, bs.dtype)
    elif params.init == "k-means||":
        r = kmeans_parallel(
            bs,
            k,
            seed,
            oversampling_factor=params.oversampling_factor,
            init_rounds=params.init_rounds,
            reference=mean,
        )
    elif params.init == "k-means++":
        r = kmeanspp_sample(bs, k, seed)
    else:
        r = random_rows(bs, k, seed)
    return {
        "method": params.init,
        "centres": r.centres,
        "n_candidates": r.n_candidates,
        "n_passes": r.n_passes,
    }


def _bincount(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels)


def _cluster_sizes(bs: BlockSet, labels: list, k: int) -> np.ndarray:
    """Rows per cluster (int64, length ``k``) from the per-block labels (small partials)."""
    counts = bs.gather(bs.map_values(_bincount, labels))
    return np.sum([np.pad(c, (0, k - len(c))) for c in counts], axis=0).astype(np.int64)
