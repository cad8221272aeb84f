"""The scikit-learn-compatible KMeans estimator over Dask (k-means|| + Lloyd map-reduce)."""

from __future__ import annotations

import logging
import numbers
import time
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from .engine.blocks import BlockSet
from .engine.init import kmeans_parallel, kmeanspp_sample, random_rows
from .engine.lloyd import IterationStats, assign_blocks, lloyd
from .engine.prepare import load_blocks, prepare_input
from .exceptions import InputError, InvalidParameterError
from .kernels.assignment import centre_distances, nearest_labels, nearest_sq_distances
from .validation import (
    check_array,
    check_interval,
    check_options,
    check_random_state,
    seed_from,
)

__all__ = ["KMeans"]

logger = logging.getLogger(__name__)

_INITS = ("k-means||", "k-means++", "random")


class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """K-means clustering of data held in Dask collections (or numpy), map-reduce over chunks.

    The data is persisted once on the workers as a few large row blocks; initialisation
    (k-means||) and every Lloyd iteration send only the centres to the blocks and bring back
    per-block partial sums. Works without a cluster (numpy input, local threads) and with
    any ``distributed`` client that is current.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {'k-means||', 'k-means++', 'random'} or array of shape (n_clusters, n_features)
        ``'k-means||'``: scalable k-means++ (Bahmani et al. 2012), ``init_rounds + 1`` passes.
        ``'k-means++'``: greedy k-means++ on a seeded row sample gathered to the caller.
        ``'random'``: ``n_clusters`` distinct rows. An array: these centres.
    oversampling_factor : float, default=2.0
        k-means|| samples ``oversampling_factor * n_clusters`` rows per round in expectation.
    init_rounds : int, default=5
        k-means|| sampling rounds.
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    tol : float, default=1e-4
        Convergence tolerance relative to the mean feature variance (scikit-learn's meaning):
        stop when the sum of squared centre shifts is at most ``tol * mean(var(X, axis=0))``.
    n_init : int, default=1
        Runs with different seeds; the lowest-inertia one is kept.
    random_state : int, RandomState, Generator or None, default=None
        Seed of the initialisation. The same seed and the same chunking give bit-identical
        centres.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres, in the data's dtype (float32 stays float32).
    labels_ : dask.array.Array of shape (n_samples,)
        Cluster of every training row, computed lazily from the workers' blocks.
    inertia_ : float
        Exact weighted sum of squared distances of the rows to their centre.
    n_iter_ : int
        Lloyd iterations of the kept run.
    history_ : list of IterationStats
        Per-iteration inertia and centre shift of the kept run.
    converged_ : bool
        Whether the kept run met ``tol`` before ``max_iter``.
    init_info_ : dict
        How the initial centres of the kept run were found (candidates, passes, seconds).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_dask import KMeans
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(np.bincount(km.predict(X)).tolist())
    [2, 2]
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | np.ndarray = "k-means||",
        oversampling_factor: float = 2.0,
        init_rounds: int = 5,
        max_iter: int = 300,
        tol: float = 1e-4,
        n_init: int = 1,
        random_state: Any = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state

    @classmethod
    def from_centers(
        cls,
        centers: Any,
        *,
        reference: Any = None,
        feature_names: list[str] | None = None,
        **params: Any,
    ) -> KMeans:
        """A fitted KMeans that assigns rows to the given centres (e.g. a reloaded model).

        Parameters
        ----------
        centers : array of shape (n_clusters, n_features)
        reference : array of shape (n_features,), optional
            Reference point of the shifted distance products (the training mean); any
            point gives the same labels up to rounding. Default: the centres' mean.
        feature_names : list of str, optional
            Column names that ``predict`` selects from DataFrames.
        **params
            Other estimator parameters, recorded as given.
        """
        C = np.ascontiguousarray(centers)
        if C.ndim != 2 or C.shape[0] < 1 or not np.isfinite(C).all():
            raise InvalidParameterError(
                f"centers must be a finite 2-D array of shape (n_clusters, n_features); got "
                f"shape {C.shape}"
            )
        if C.dtype != np.float32:
            C = C.astype(np.float64)
        km = cls(n_clusters=C.shape[0], **params)
        km.cluster_centers_ = C
        km.reference_ = (
            C.mean(axis=0).astype(np.float64)
            if reference is None
            else np.asarray(reference, dtype=np.float64)
        )
        km.n_features_in_ = C.shape[1]
        if feature_names is not None:
            km.feature_names_in_ = np.asarray(list(feature_names), dtype=object)
        km._fit_lazy = False
        return km

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        owner = type(self).__name__
        check_interval(self.n_clusters, "n_clusters", owner, kind=numbers.Integral, low=1)
        if isinstance(self.init, str):
            check_options(self.init, "init", owner, _INITS)
        elif not hasattr(self.init, "shape") and not isinstance(self.init, list | tuple):
            check_options(self.init, "init", owner, _INITS)
        check_interval(
            self.oversampling_factor, "oversampling_factor", owner, low=0, closed="right"
        )
        check_interval(self.init_rounds, "init_rounds", owner, kind=numbers.Integral, low=1)
        check_interval(self.max_iter, "max_iter", owner, kind=numbers.Integral, low=1)
        check_interval(self.tol, "tol", owner, low=0)
        check_interval(self.n_init, "n_init", owner, kind=numbers.Integral, low=1)
        check_random_state(self.random_state, owner)

    def _explicit_init(self, n_features: int, dtype: np.dtype) -> np.ndarray | None:
        if isinstance(self.init, str):
            return None
        C = np.asarray(self.init)
        if C.shape != (self.n_clusters, n_features):
            raise ValueError(
                f"The shape of the initial centers {C.shape} does not match the number of "
                f"clusters {self.n_clusters} and features {n_features}: 'init' must have "
                f"shape (n_clusters, n_features) = ({self.n_clusters}, {n_features})."
            )
        if not np.isfinite(C).all():
            raise ValueError("The initial centers given in 'init' contain NaN or infinity.")
        return np.ascontiguousarray(C, dtype=dtype)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMeans:
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like, dask array or dask DataFrame of shape (n_samples, n_features)
            Numeric training data; DataFrame columns are the features.
        y : ignored
        sample_weight : array-like or dask array of shape (n_samples,), optional
            Non-negative weight of each row (integer weights act like repeated rows).

        Returns
        -------
        self : KMeans
        """
        self._validate_params()
        owner = type(self).__name__
        prep = prepare_input(X, sample_weight, owner=owner)
        explicit = self._explicit_init(prep.n_features, prep.dtype)
        bs = load_blocks(prep, owner=owner)
        try:
            self._fit_prepared(bs, prep, explicit)
        finally:
            bs.release()
        return self

    def _fit_prepared(self, bs: BlockSet, prep: Any, explicit: np.ndarray | None = None) -> None:
        """Fit on data already persisted as blocks (shared by several fits in a K sweep)."""
        self._fit_blocks(bs, explicit, prep.row_chunks)
        self.n_features_in_ = prep.n_features
        if prep.feature_names is not None:
            self.feature_names_in_ = np.asarray(prep.feature_names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._fit_lazy = prep.lazy

    def _fit_blocks(self, bs: BlockSet, explicit: np.ndarray | None, row_chunks) -> None:
        if bs.n_samples < self.n_clusters:
            raise ValueError(f"n_samples={bs.n_samples} should be >= n_clusters={self.n_clusters}.")
        n, mean, m2 = bs.moments()
        self.reference_ = mean
        tol_abs = float(np.mean(m2 / n) * self.tol) if self.tol else 0.0
        seed = seed_from(self.random_state)
        seeds = np.random.SeedSequence(seed).generate_state(self.n_init, dtype=np.uint64)
        n_init = 1 if explicit is not None else self.n_init
        best = None
        for run in range(n_init):
            t0 = time.perf_counter()
            run_seed = int(seeds[run]) if n_init > 1 else seed
            init = self._initial_centres(bs, explicit, run_seed, mean)
            t_init = time.perf_counter() - t0
            res = lloyd(
                bs, init["centres"], max_iter=self.max_iter, tol_abs=tol_abs, reference=mean
            )
            labels, inertia = assign_blocks(bs, res.centres, mean)
            init["seconds"] = t_init
            logger.info(
                "KMeans run %d/%d: inertia %.6g after %d iteration(s)%s",
                run + 1,
                n_init,
                inertia,
                res.n_iter,
                "" if res.converged else " (max_iter reached)",
            )
            if best is None or inertia < best[1]:
                if best is not None:
                    bs.release(best[0])
                best = (labels, inertia, res, init)
            else:
                bs.release(labels)
        labels, inertia, res, init = best
        self.cluster_centers_ = res.centres
        self.inertia_ = inertia
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.history_: list[IterationStats] = res.history
        self.init_info_ = {k: v for k, v in init.items() if k != "centres"}
        self.labels_ = bs.per_block_array(labels, np.int32, row_chunks)
        self._label_handles = labels  # per-block labels on the workers (metrics of a sweep)
        n_distinct = self._count_distinct_clusters(bs, labels)
        if n_distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=3,
            )

    @staticmethod
    def _count_distinct_clusters(bs: BlockSet, labels: list) -> int:
        counts = bs.gather(bs.map_handles(_bincount, labels))
        return int(np.count_nonzero(np.sum(_pad(counts), axis=0)))

    def _initial_centres(
        self, bs: BlockSet, explicit: np.ndarray | None, seed: int, mean: np.ndarray
    ) -> dict:
        if explicit is not None:
            return {"method": "array", "centres": explicit, "n_candidates": 0, "n_passes": 0}
        k = self.n_clusters
        pool = getattr(self, "_init_pool", None)  # set by a K sweep: one pool for every K
        if self.init == "k-means||" and pool is not None:
            r = pool.reduce(k, seed, bs.dtype)
        elif self.init == "k-means||":
            r = kmeans_parallel(
                bs,
                k,
                seed,
                oversampling_factor=self.oversampling_factor,
                init_rounds=self.init_rounds,
                reference=mean,
            )
        elif self.init == "k-means++":
            r = kmeanspp_sample(bs, k, seed)
        else:
            r = random_rows(bs, k, seed)
        return {
            "method": self.init,
            "centres": r.centres,
            "n_candidates": r.n_candidates,
            "n_passes": r.n_passes,
        }

    # ------------------------------------------------------------------ use
    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _apply(self, X: Any, func, out_cols: int | None, dtype: np.dtype):
        """Run a per-chunk function on numpy (eagerly) or dask input (lazily)."""
        from .validation import _is_dask_array, _is_dask_frame, _resolve_dtype

        self._check_fitted()
        names = getattr(self, "feature_names_in_", None)
        names = list(names) if names is not None else None
        owner = type(self).__name__
        if _is_dask_frame(X):
            if names is not None:
                missing = [c for c in names if c not in X.columns]
                if missing:
                    raise ValueError(
                        f"{owner}: X has no column(s) {missing}; it was fitted on columns {names}."
                    )
                X = X[names]
            _resolve_dtype(list(X.dtypes), [repr(str(c)) for c in X.columns], owner)
            X = X.to_dask_array()
        if _is_dask_array(X):
            if X.ndim != 2 or X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[-1]} features, but {owner} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            X = X.rechunk({1: -1})
            C, ref = self.cluster_centers_, self.reference_
            if out_cols is None:
                return X.map_blocks(
                    _checked_block, func, C, ref, dtype=dtype, drop_axis=1, meta=np.empty(0, dtype)
                )
            return X.map_blocks(
                _checked_block,
                func,
                C,
                ref,
                dtype=dtype,
                chunks=(X.chunks[0], (out_cols,)),
                meta=np.empty((0, 0), dtype),
            )
        import pandas as pd

        if isinstance(X, pd.DataFrame) and names is not None:
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise InputError(
                    f"{owner}: X has no column(s) {missing}; it was fitted on columns {names}."
                )
            X = X[names]
        if isinstance(X, pd.DataFrame):
            _resolve_dtype(list(X.dtypes), [repr(str(c)) for c in X.columns], owner)
        arr = check_array(X, owner)
        if arr.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {owner} is expecting "
                f"{self.n_features_in_} features as input."
            )
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr).all(axis=0))
            raise ValueError(f"Input X contains NaN or infinity in column(s) {bad.tolist()}.")
        return func(arr, self.cluster_centers_, self.reference_)

    def predict(self, X: Any) -> Any:
        """Index of the nearest centre of each row (numpy in, numpy out; dask in, dask out)."""
        return self._apply(X, nearest_labels, None, np.dtype(np.int32))

    def transform(self, X: Any) -> Any:
        """Euclidean distance of each row to every centre, shape (n_samples, n_clusters)."""
        return self._apply(X, centre_distances, self.n_clusters, self.cluster_centers_.dtype)

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit and return the training labels (numpy for numpy input, else a dask array)."""
        self.fit(X, sample_weight=sample_weight)
        return self.labels_ if self._fit_lazy else self.labels_.compute()

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Opposite of the inertia of ``X`` against the fitted centres (higher is better)."""
        d = self._apply(X, nearest_sq_distances, None, np.dtype(np.float64))
        w = None if sample_weight is None else sample_weight
        if hasattr(d, "compute"):
            total = (d if w is None else d * w).sum().compute()
        else:
            total = d.sum() if w is None else d @ np.asarray(w, dtype=np.float64)
        return -float(total)


def _checked_block(X: np.ndarray, func, C: np.ndarray, ref: np.ndarray) -> np.ndarray:
    if not np.isfinite(X).all():
        raise ValueError("Input X contains NaN or infinity.")
    return func(X, C, ref)


def _bincount(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels)


def _pad(counts: list[np.ndarray]) -> np.ndarray:
    m = max(len(c) for c in counts)
    return np.array([np.pad(c, (0, m - len(c))) for c in counts])
