"""The scikit-learn-compatible KMeans estimator over Dask (k-means|| + Lloyd map-reduce)."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from .engine.blocks import BlockSet
from .engine.fit import ALGORITHMS, INIT_METHODS, FitParams, FitResult, fit_blocks
from .engine.outputs import checked_apply
from .engine.prepare import PreparedInput, load_blocks, prepare_input, prepared_blocks
from .exceptions import InvalidParameterError
from .kernels.assignment import centre_distances, nearest_labels, nearest_sq_distances
from .validation import (
    as_feature_array,
    check_interval,
    check_options,
    check_random_state,
    seed_from,
)

__all__ = ["KMeans", "fit_params", "set_fitted", "validate_params"]


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
        Maximum Lloyd iterations per run ('minibatch': at most ``max_iter * n_samples //
        batch_size`` steps, as in scikit-learn's MiniBatchKMeans).
    tol : float, default=1e-4
        Convergence tolerance relative to the mean feature variance (scikit-learn's meaning):
        stop when the sum of squared centre shifts is at most ``tol * mean(var(X, axis=0))``
        ('minibatch': of one step; scikit-learn's MiniBatchKMeans default 0 disables it).
    n_init : int, default=1
        Runs with different seeds; the lowest-inertia one is kept ('minibatch': runs on the
        sample pool, compared by their inertia on it).
    random_state : int, RandomState, Generator or None, default=None
        Seed of the initialisation and of the mini-batches. The same seed and the same
        chunking give bit-identical centres (for ``'minibatch'``, any chunking).
    algorithm : {'lloyd', 'bounds', 'auto', 'minibatch'}, default='lloyd'
        ``'lloyd'``: full passes until ``tol``. ``'bounds'``: the same passes with the same
        results (assignments in every iteration, ``n_iter_``, centres bit for bit,
        ``inertia_``), pruned by Yinyang's grouped bounds: per row a label and bounds (``t =
        min(32, k // 10)`` groups; ``16 + 4 t`` bytes with segment sums) stay on the workers;
        only rows whose bounds cannot exclude a change are read and get distances
        (``history_[i].n_skipped`` counts the distances spared). ``'auto'``: ``'bounds'``
        from 16 clusters in float64 and from 256 in float32, when the bounds are at most
        half a row's bytes; else ``'lloyd'``. ``'minibatch'``:
        scikit-learn's MiniBatchKMeans rule on batches drawn from a seeded sample pool (one
        pass, at most ``kmeans_dask.minibatch-pool-bytes`` of rows, default 64 MiB), then one
        pass for ``labels_`` and the exact ``inertia_``. ``init='k-means++'``/``'random'`` on
        ``3 * batch_size`` pool rows (two passes in all); ``'k-means||'`` on all the data.
    batch_size : int, default=1024
        Rows per mini-batch ('minibatch' only, as are the next three).
    max_no_improvement : int or None, default=10
        Stop after this many steps without a better smoothed batch inertia (None: never).
    reassignment_ratio : float, default=0.01
        Centres with less than this fraction of the largest centre's weight move to
        random batch rows.
    refine : bool, default=True
        Then Lloyd on the sample pool in memory (no pass over the data) until ``tol``:
        scikit-learn's learning rate freezes centres early (8M rows: 1.1% above Lloyd's
        inertia; refined, 0.0%). False: scikit-learn's MiniBatchKMeans result.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres, in the data's dtype (float32 stays float32).
    reference_ : ndarray of shape (n_features,)
        The training mean: distance products are shifted by it (exact on data far from the
        origin).
    labels_ : dask.array.Array of shape (n_samples,)
        Cluster of every training row, computed lazily from the workers' blocks.
    inertia_ : float
        Exact weighted sum of squared distances of the rows to their centre.
    cluster_sizes_ : ndarray of shape (n_clusters,)
        Training rows per cluster (unweighted counts of ``labels_``, int64), from the final
        assignment pass (no extra pass over the data).
    n_init_inertias_ : ndarray of shape (n_init,)
        ``inertia_`` of every run, in the order they ran (one value for explicit ``init``
        centres); the kept run is the first with the lowest, so
        ``inertia_ == n_init_inertias_.min()``.
    n_iter_ : int
        Lloyd iterations of the kept run (``'minibatch'``: passes' worth of batch rows,
        ``ceil(n_steps_ * batch_size / n_samples)``).
    n_steps_ : int
        Mini-batches processed (``'minibatch'`` only).
    history_ : list of IterationStats
        Per-iteration inertia and centre shift of the kept run (``'minibatch'``: per step,
        the batch's inertia, the step's squared shift and, as ``n_empty``, the centres
        reassigned).
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
        algorithm: str = "lloyd",
        batch_size: int = 1024,
        max_no_improvement: int | None = 10,
        reassignment_ratio: float = 0.01,
        refine: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.algorithm = algorithm
        self.batch_size = batch_size
        self.max_no_improvement = max_no_improvement
        self.reassignment_ratio = reassignment_ratio
        self.refine = refine

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
        validate_params(self)
        owner = type(self).__name__
        if isinstance(X, BlockSet):  # built and checked by the caller (e.g. streamed)
            bs, prep, owned = X, prepared_blocks(X, sample_weight, owner), False
            params = fit_params(self, prep.n_features, prep.dtype)
        else:
            prep = prepare_input(X, sample_weight, owner=owner)
            params = fit_params(self, prep.n_features, prep.dtype)
            bs, owned = load_blocks(prep, owner=owner), True
        try:
            set_fitted(self, fit_blocks(bs, params), bs, prep)
        finally:
            if owned:
                bs.release()
        return self

    # ------------------------------------------------------------------ use
    def _apply(self, X: Any, func: Callable, out_cols: int | None, dtype: np.dtype) -> Any:
        """Run a per-chunk assignment kernel on numpy (eagerly) or dask input (lazily)."""
        check_is_fitted(self, "cluster_centers_")
        names = getattr(self, "feature_names_in_", None)
        names = list(names) if names is not None else None
        owner = type(self).__name__
        C, ref = self.cluster_centers_, self.reference_
        X, in_memory = as_feature_array(
            X, owner, n_features=self.n_features_in_, feature_names=names, dtype=C.dtype
        )
        if in_memory:
            return func(X, C, ref)
        if out_cols is None:
            return X.map_blocks(
                checked_apply, func, C, ref, owner, dtype=dtype, drop_axis=1,
                meta=np.empty(0, dtype),
            )
        return X.map_blocks(
            checked_apply,
            func,
            C,
            ref,
            owner,
            dtype=dtype,
            chunks=(X.chunks[0], (out_cols,)),
            meta=np.empty((0, 0), dtype),
        )

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
        if sample_weight is None:
            total = d.sum()
        elif hasattr(d, "compute"):
            total = (d * sample_weight).sum()
        else:
            total = d @ np.asarray(sample_weight, dtype=np.float64)
        return -float(total.compute() if hasattr(total, "compute") else total)


# --------------------------------------------------------------------------- fit API
# The internal fit API shared by KMeans.fit and sweep_k: validate an estimator's
# parameters, resolve them for the engine, and wrap the engine's result as fitted attributes.


def validate_params(km: KMeans) -> None:
    """Raise InvalidParameterError for any parameter of ``km`` out of range (no data needed)."""
    owner = type(km).__name__
    check_interval(km.n_clusters, "n_clusters", owner, kind=numbers.Integral, low=1)
    if isinstance(km.init, str) or not (
        hasattr(km.init, "shape") or isinstance(km.init, list | tuple)
    ):
        check_options(km.init, "init", owner, INIT_METHODS)
    check_interval(km.oversampling_factor, "oversampling_factor", owner, low=0, closed="right")
    check_interval(km.init_rounds, "init_rounds", owner, kind=numbers.Integral, low=1)
    check_interval(km.max_iter, "max_iter", owner, kind=numbers.Integral, low=1)
    check_interval(km.tol, "tol", owner, low=0)
    check_interval(km.n_init, "n_init", owner, kind=numbers.Integral, low=1)
    check_random_state(km.random_state, owner)
    check_options(km.algorithm, "algorithm", owner, ALGORITHMS)
    check_interval(km.batch_size, "batch_size", owner, kind=numbers.Integral, low=1)
    mni = km.max_no_improvement
    if mni is not None and not (
        isinstance(mni, numbers.Integral) and not isinstance(mni, bool) and mni >= 0
    ):
        raise InvalidParameterError(
            f"The 'max_no_improvement' parameter of {owner} must be an int in the range "
            f"[0, inf) or None. Got {mni!r} instead."
        )
    check_interval(km.reassignment_ratio, "reassignment_ratio", owner, low=0)
    if not isinstance(km.refine, bool | np.bool_):
        raise InvalidParameterError(
            f"The 'refine' parameter of {owner} must be an instance of 'bool'. "
            f"Got {km.refine!r} instead."
        )


def fit_params(km: KMeans, n_features: int, dtype: np.dtype) -> FitParams:
    """The engine's :class:`FitParams` of a validated estimator for data of ``n_features``
    columns in ``dtype`` (checks explicit initial centres; draws the seed once)."""
    centres = None
    if not isinstance(km.init, str):
        centres = np.asarray(km.init)
        if centres.shape != (km.n_clusters, n_features):
            raise InvalidParameterError(
                f"The shape of the initial centers {centres.shape} does not match the number "
                f"of clusters {km.n_clusters} and features {n_features}: 'init' must have "
                f"shape (n_clusters, n_features) = ({km.n_clusters}, {n_features})."
            )
        if not np.isfinite(centres).all():
            raise InvalidParameterError(
                "The initial centers given in 'init' contain NaN or infinity."
            )
        centres = np.ascontiguousarray(centres, dtype=dtype)
    return FitParams(
        n_clusters=int(km.n_clusters),
        init=km.init if centres is None else "array",
        oversampling_factor=float(km.oversampling_factor),
        init_rounds=int(km.init_rounds),
        max_iter=int(km.max_iter),
        tol=float(km.tol),
        n_init=int(km.n_init),
        seed=seed_from(km.random_state),
        centres=centres,
        algorithm=km.algorithm,
        batch_size=int(km.batch_size),
        max_no_improvement=None if km.max_no_improvement is None else int(km.max_no_improvement),
        reassignment_ratio=float(km.reassignment_ratio),
        refine=bool(km.refine),
    )


def set_fitted(km: KMeans, result: FitResult, bs: BlockSet, prep: PreparedInput) -> KMeans:
    """Set ``km``'s fitted attributes from an engine result on blocks ``bs`` of ``prep``.

    ``labels_`` refers to the result's per-block labels on the workers (they live as long
    as the estimator refers to them).
    """
    km.cluster_centers_ = result.centres
    km.reference_ = result.reference
    km.inertia_ = result.inertia
    km.n_init_inertias_ = np.asarray(result.run_inertias, dtype=np.float64)
    km.n_iter_ = result.n_iter
    if result.n_steps is not None:
        km.n_steps_ = result.n_steps
    elif hasattr(km, "n_steps_"):
        del km.n_steps_
    km.converged_ = result.converged
    km.history_ = result.history
    km.init_info_ = dict(result.init_info)
    km.cluster_sizes_ = result.sizes
    km.labels_ = bs.per_block_array(result.labels, np.int32, prep.row_chunks)
    km.n_features_in_ = prep.n_features
    if prep.feature_names is not None:
        km.feature_names_in_ = np.asarray(prep.feature_names, dtype=object)
    elif hasattr(km, "feature_names_in_"):
        del km.feature_names_in_
    km._fit_lazy = prep.lazy
    if result.n_distinct < km.n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({result.n_distinct}) found smaller than "
            f"n_clusters ({km.n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return km
