"""Choosing K: fits for several K on data persisted once, run concurrently, with metrics.

Every K's fit is driven by its own client thread over the same persisted blocks, so their
tasks interleave on the cluster; their Lloyd E-steps meet in a
:class:`~kmeans_dask.engine.lockstep.Lockstep` (one combined pass per round for every K
still iterating, same bits; dask config ``kmeans_dask.sweep-lockstep: false`` switches it
off); each fit is followed by its metrics (two passes for Spark's squared-Euclidean
silhouette, Calinski-Harabasz and Davies-Bouldin, one for the stratified sample of the exact
silhouette). K is then picked by the maximum sampled silhouette or by
the knee (Kneedle) of the inertia curve.

Progress: a :func:`kmeans_dask.progress.task` counts the K done (fit and metrics) of N, and
the fits' threads run in a copy of the caller's context (its progress reporter, an
orchestrator's run context). Each K's result is a DEBUG record; the choice is one INFO line.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import progress
from .engine.blocks import BlockSet
from .engine.fit import FitResult, fit_blocks
from .engine.init import candidate_pool
from .engine.lockstep import Lockstep, use_lockstep
from .engine.prepare import PreparedInput, load_blocks, prepare_input, prepared_blocks
from .engine.silhouette import shared_sample_silhouettes
from .exceptions import InvalidParameterError
from .kernels.knee import Knee, find_knee
from .kmeans import KMeans, fit_params, set_fitted, validate_params
from .metrics import cluster_quality
from .validation import check_options, seed_from

__all__ = ["SELECT_RULES", "SweepResult", "elbow_knee", "sweep_k"]

logger = logging.getLogger(__name__)

SELECT_RULES = ("silhouette", "elbow")
COLUMNS = [
    "k",
    "inertia",
    "silhouette_sample",
    "silhouette_full_sq",
    "calinski_harabasz",
    "davies_bouldin",
    "n_iter",
    "fit_seconds",
    "metrics_seconds",
]


@dataclass
class SweepResult:
    """Outcome of :func:`sweep_k`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per K: inertia, ``silhouette_sample`` (exact Euclidean silhouette of a
        stratified sample), ``silhouette_full_sq`` (Spark's squared-Euclidean silhouette over
        all rows), Calinski-Harabasz, Davies-Bouldin, iterations and seconds.
    k : int
        The chosen K.
    rule : str
        How K was chosen (``'silhouette'``, ``'elbow'``, or the fallback taken and why).
    knee : Knee
        The Kneedle result on the log-inertia curve (``knee.x`` is None when there is none).
    model : KMeans
        The fitted model of the chosen K.
    centres : dict
        The centres of every K.
    sample_index, sample_labels : ndarray
        The rows of the shared silhouette sample (global positions) and their label under
        every K (one column per row of ``table``): ``silhouette_sample`` of K is
        ``sklearn.metrics.silhouette_score(X[sample_index], sample_labels[:, j])``.
    """

    table: pd.DataFrame
    k: int
    rule: str
    knee: Knee
    model: KMeans
    centres: dict[int, np.ndarray] = field(default_factory=dict)
    sample_index: np.ndarray | None = None
    sample_labels: np.ndarray | None = None

    def plot_elbow(self) -> bytes:
        """PNG of inertia vs K with the knee and the chosen K marked."""
        from .plots import elbow_png

        return elbow_png(self.table, self.knee.x, self.k)

    def plot_silhouette(self) -> bytes:
        """PNG of both silhouettes vs K with the chosen K marked."""
        from .plots import silhouette_png

        return silhouette_png(self.table, self.k)


def _validate(k_values: Any, select: str, sample_size: Any) -> list[int]:
    check_options(select, "select", "sweep_k", SELECT_RULES)
    if isinstance(k_values, numbers.Integral) or not isinstance(k_values, Sequence | np.ndarray):
        raise InvalidParameterError(
            f"k_values must be a non-empty sequence of ints >= 1; got {k_values!r}"
        )
    ks = list(k_values)
    if not ks:
        raise InvalidParameterError("k_values is empty; give at least one K, e.g. range(2, 11)")
    bad = [k for k in ks if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1]
    if bad:
        raise InvalidParameterError(f"k_values must be ints >= 1; got {bad}")
    if select == "silhouette" and min(ks) < 2:
        raise InvalidParameterError(
            f"select='silhouette' needs every K >= 2 (a silhouette needs two clusters); "
            f"k_values has {min(ks)}. Use select='elbow' to include K=1."
        )
    if not isinstance(sample_size, numbers.Integral) or sample_size < 2:
        raise InvalidParameterError(
            f"silhouette_sample_size must be an int >= 2; got {sample_size!r}"
        )
    return sorted({int(k) for k in ks})


def elbow_knee(k: np.ndarray, inertia: np.ndarray) -> Knee:
    """Kneedle on log(inertia).

    The inertia of well-separated segments falls by orders of magnitude once K reaches the
    number of segments; on a linear scale the first drops dominate the normalised curve and
    Kneedle lands early (measured here: 5 instead of 7, and 3 instead of 4 on 2-D blobs),
    while on a log scale the bend is where the segments are.
    """
    inertia = np.asarray(inertia, dtype=np.float64)
    floor = (
        max(inertia[inertia > 0].min() * 1e-12, np.finfo(float).tiny)
        if (inertia > 0).any()
        else 1.0
    )
    return find_knee(k, np.log(np.maximum(inertia, floor)))


def _choose(table: pd.DataFrame, select: str, knee: Knee) -> tuple[int, str]:
    sil = table.dropna(subset=["silhouette_sample"])

    def best_silhouette() -> int:
        # highest silhouette; ties go to the smaller K
        return int(sil.sort_values(["silhouette_sample", "k"], ascending=[False, True]).k.iloc[0])

    if select == "silhouette":
        return best_silhouette(), "silhouette"
    if knee.x is not None:
        return int(knee.x), "elbow"
    if len(sil):
        return best_silhouette(), f"silhouette (elbow: no knee, {knee.reason})"
    return int(table.k.iloc[0]), f"smallest K (elbow: no knee, {knee.reason}; no silhouette)"


def sweep_k(
    X: Any,
    k_values: Sequence[int],
    select: str = "silhouette",
    silhouette_sample_size: int = 20_000,
    random_state: int = 0,
    sample_weight: Any = None,
    callback: Callable[[dict], None] | None = None,
    **kmeans_params: Any,
) -> SweepResult:
    """Fit KMeans for every K in ``k_values`` on data persisted once, and pick K.

    Parameters
    ----------
    X : array-like, dask array or dask DataFrame
        Features (already scaled as wanted).
    k_values : sequence of int
        Values of K to try (duplicates removed, sorted).
    select : {'silhouette', 'elbow'}
        ``'silhouette'``: the K with the highest sampled silhouette. ``'elbow'``: the knee
        of the log-inertia curve (Kneedle, see :func:`elbow_knee`); when there is none,
        the highest silhouette, and the result's ``rule`` says so.
    silhouette_sample_size : int
        Rows in the stratified sample of the exact silhouette.
    random_state : int
        Seed of every fit (the same seed for each K) and of the sample.
    sample_weight : array-like or dask array, optional
    callback : callable, optional
        Called with each K's table row as it completes (progress reporting).
    **kmeans_params
        Passed to :class:`KMeans` (``init``, ``max_iter``, ``tol``, ``n_init``, ...).

    Returns
    -------
    SweepResult
    """
    ks = _validate(k_values, select, silhouette_sample_size)
    seed = seed_from(random_state)
    for key in ("n_clusters", "random_state"):
        if key in kmeans_params:
            raise InvalidParameterError(f"sweep_k sets {key!r} itself; do not pass it")
    validate_params(KMeans(**kmeans_params))
    if isinstance(X, BlockSet):  # built and checked by the caller (e.g. streamed)
        bs, prep, owned = X, prepared_blocks(X, sample_weight, "sweep_k"), False
    else:
        prep = prepare_input(X, sample_weight, owner="sweep_k")
        bs, owned = load_blocks(prep, owner="sweep_k"), True
    try:
        if ks[-1] > bs.n_samples:
            raise InvalidParameterError(
                f"k_values contains K={ks[-1]} but X has only n_samples={bs.n_samples} rows"
            )
        with progress.task(f"sweep K={ks[0]}..{ks[-1]}", total=len(ks)) as bar:
            fits = _fit_all(bs, prep, ks, seed, kmeans_params, bar)
        with progress.task(f"sweep: silhouettes of a {silhouette_sample_size:,}-row sample"):
            rows, sample_index, sample_labels = _sample_silhouettes(
                bs, fits, ks, silhouette_sample_size, seed, callback
            )
        table = pd.DataFrame(rows, columns=COLUMNS)
        knee = elbow_knee(table.k.to_numpy(), table.inertia.to_numpy())
        k, rule = _choose(table, select, knee)
        for other, fit in fits.items():
            if other != k:
                bs.release(fit.result.labels)
        logger.info("sweep chose K=%d by %s (%s)", k, rule, _brief(table))
        return SweepResult(
            table,
            k,
            rule,
            knee,
            fits[k].model,
            {kk: f.result.centres for kk, f in fits.items()},
            sample_index,
            sample_labels,
        )
    finally:
        if owned:
            bs.release()


@dataclass
class _Fit:
    """One K of a sweep: the engine's result, the wrapped model and its table row."""

    result: FitResult
    model: KMeans
    row: dict[str, Any]


def _brief(table: pd.DataFrame) -> str:
    """The sweep in a few words: the sampled silhouette of every K."""
    return "silhouette by K: " + ", ".join(
        f"{int(k)} {v:.3f}" for k, v in zip(table.k, table.silhouette_sample, strict=True)
    )


def _fit_all(
    bs: BlockSet,
    prep: PreparedInput,
    ks: list[int],
    seed: int,
    kmeans_params: dict,
    bar: progress.ProgressTask,
) -> dict[int, _Fit]:
    """Every K fitted concurrently (one client thread each) from one k-means|| pool."""
    reference = bs.moments()[1]
    init_pool = None
    if kmeans_params.get("init", "k-means||") == "k-means||":
        # one k-means|| pass set, oversampled for the largest K, seeds every K
        init_pool = candidate_pool(
            bs.tagged("sweep-init"),
            ks[-1],
            seed,
            kmeans_params.get("oversampling_factor", 2.0),
            kmeans_params.get("init_rounds", 5),
            reference,
        )

    # the fits' Lloyd E-steps share one pass per round (one read of streamed blocks)
    lockstep = Lockstep(bs.tagged("sweep-lloyd")) if use_lockstep() else None

    def run(k: int) -> _Fit:
        view = bs.tagged(f"sweep-k{k}")
        km = KMeans(k, random_state=seed, **kmeans_params)
        t0 = time.perf_counter()
        params = fit_params(km, prep.n_features, prep.dtype)
        result = fit_blocks(view, params, init_pool, lockstep)
        set_fitted(km, result, view, prep)
        t1 = time.perf_counter()
        quality = cluster_quality(view, result.labels, k, reference)
        logger.debug(
            "sweep K=%d: inertia %.6g, silhouette %.4f (full, squared), %d iterations",
            k,
            result.inertia,
            quality.silhouette_full_sq,
            result.n_iter,
        )
        row = {
            "k": k,
            "inertia": result.inertia,
            "silhouette_sample": float("nan"),  # filled in later, for all K at once
            "silhouette_full_sq": quality.silhouette_full_sq,
            "calinski_harabasz": quality.calinski_harabasz,
            "davies_bouldin": quality.davies_bouldin,
            "n_iter": result.n_iter,
            "fit_seconds": t1 - t0,
            "metrics_seconds": time.perf_counter() - t1,
        }
        bar.advance(status=f"K={k} done")
        return _Fit(result, km, row)

    # with the lockstep, every K its own thread: a K left waiting for a thread would run its
    # Lloyd loop alone afterwards
    workers = len(ks) if lockstep is not None else max(1, min(len(ks), 8))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
            # each fit in a copy of this context: the caller's progress reporter, log context
            return dict(zip(ks, pool.map(progress.in_context(run), ks), strict=True))
    finally:
        if lockstep is not None:
            lockstep.close()


def _sample_silhouettes(
    bs: BlockSet,
    fits: dict[int, _Fit],
    ks: list[int],
    size: int,
    seed: int,
    callback: Callable[[dict], None] | None,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """The exact silhouettes of every K on one shared sample (one pass of distances), added
    to the table rows. Returns ``(rows, sample global indices, sample labels)``."""
    t0 = time.perf_counter()
    sil, sample_index, sample_labels = shared_sample_silhouettes(
        bs, [fits[k].result.labels for k in ks], ks, size, seed
    )
    share = (time.perf_counter() - t0) / len(ks)
    rows = []
    for k, value in zip(ks, sil, strict=True):
        row = fits[k].row
        row["silhouette_sample"] = float(value)
        row["metrics_seconds"] += share
        if callback is not None:
            callback(row)
        rows.append(row)
    return rows, sample_index, sample_labels
