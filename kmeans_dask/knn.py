"""Chunked k-nearest-neighbour scoring of new rows against a labelled reference set.

:class:`KNeighborsScorer` persists the reference rows once as row blocks (a
:class:`~kmeans_dask.blocks.BlockSet` whose blocks carry the labels, or the numeric target,
next to the features) and scores query blocks against them blockwise: one task per (query
block, reference block) pair keeps that pair's exact top-k, a tree reduction merges the
top-k lists, and a last task per query block votes (:mod:`kmeans_dask.knn_graph` builds the
graphs, :mod:`kmeans_dask.knn_kernels` holds the compiled kernels). Neither side is
gathered to the caller; results are lazy dask collections (numpy in, numpy out for
in-memory queries).
"""

from __future__ import annotations

import logging
import numbers
from typing import Any

import dask
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .engine import knn_graph as kg
from .engine.blocks import Block, BlockSet
from .engine.knn_graph import MERGE_FAN_IN
from .engine.prepare import load_blocks, prepare_input
from .exceptions import InputError, InvalidParameterError
from .validation import as_feature_array, check_interval, check_options
from .validation.labels import (
    as_vector,
    codes_block,
    encode_labels,
    known_rows,
    n_nonfinite,
    unique,
)

__all__ = ["MERGE_FAN_IN", "KNeighborsScorer", "fit_on_blocks"]

#: Rows per query block when the queries are given in memory.
QUERY_BLOCK_ROWS = 16_384

_WEIGHTS = ("uniform", "distance")
_TASKS = ("classify", "regress")
_ALGORITHMS = ("auto", "brute", "pruned")
logger = logging.getLogger(__name__)


class KNeighborsScorer(BaseEstimator):
    """Exact k-nearest-neighbour vote (or mean) of query rows over a labelled reference set.

    Blockwise: every (query block, reference block) pair yields its exact top-k, and the
    top-k lists are merged by a tree reduction; results equal scikit-learn's
    ``KNeighborsClassifier`` / ``KNeighborsRegressor`` with ``algorithm="brute"``, whichever
    ``algorithm`` searches.
    Equal distances are ordered by the lower reference row, equal votes go to the smallest
    label, so results do not depend on the chunking.

    Parameters
    ----------
    n_neighbors : int, default=15
        Neighbours per query row (at most the number of reference rows).
    weights : {'uniform', 'distance'}, default='uniform'
        ``'distance'`` weighs a neighbour by ``1 / distance``; a query with neighbours at
        distance 0 gives them weight 1 and the others 0 (scikit-learn's rule).
    task : {'classify', 'regress'}, default='classify'
        Vote over labels (e.g. k-means segments) or average a numeric target.
    algorithm : {'auto', 'brute', 'pruned'}, default='auto'
        ``'brute'`` computes every query-reference distance. ``'pruned'`` groups each
        persisted reference block by a small k-means of its own (about 2,048 rows per
        cluster, built at the first search and kept) and skips, per tile of 128 query rows,
        every cluster whose bound ``||q - c|| - radius_c`` exceeds the rows' current
        candidate distance (same neighbours, ties and distances as ``'brute'``). ``'auto'``
        builds those indexes only for a search of at least 40 queries per cluster of the
        largest block (so that building them costs at most ~5% of a brute-force search),
        and then prunes, but a pair task whose probe of 256 queries skips under 40% of the
        distances searches the rest of its block by brute force. Streamed reference blocks
        and blocks under 8,192 rows are always searched by brute force.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted labels (``task='classify'``).
    n_features_in_ : int
    n_samples_fit_ : int
        Reference rows.
    feature_names_in_ : ndarray of str
        Only when ``X`` in ``fit`` was a DataFrame; DataFrame queries are selected by these names.
    search_stats_ : dict
        Distances of the last search: ``mode`` ('brute', 'pruned' or 'auto'), ``computed``,
        ``total`` (queries x reference rows), ``skipped`` and ``skipped_fraction``, after
        in-memory queries. After dask queries
        only ``'delayed'``: a Delayed of those counts, to compute together with the results
        (``dask.compute(pred, scorer.search_stats_["delayed"])``: they share the search's
        tasks, so it runs once). Updated in place by every query.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_dask import KNeighborsScorer
    >>> X = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> knn = KNeighborsScorer(n_neighbors=2).fit(X, np.array([0, 0, 1, 1]))
    >>> knn.predict(np.array([[0.05], [1.05]])).tolist()
    [0, 1]
    """

    def __init__(
        self,
        n_neighbors: int = 15,
        *,
        weights: str = "uniform",
        task: str = "classify",
        algorithm: str = "auto",
    ) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.task = task
        self.algorithm = algorithm

    # ------------------------------------------------------------------ fit
    def _validate_params(self) -> None:
        owner = type(self).__name__
        check_interval(self.n_neighbors, "n_neighbors", owner, kind=numbers.Integral, low=1)
        check_options(self.weights, "weights", owner, _WEIGHTS)
        check_options(self.task, "task", owner, _TASKS)
        check_options(self.algorithm, "algorithm", owner, _ALGORITHMS)

    def _check_k(self, k: int, n_ref: int, name: str = "n_neighbors") -> None:
        if k > n_ref:
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(self).__name__} must be an int in the range "
                f"[1, {n_ref}] (at most the number of reference rows, n_samples={n_ref}). Got "
                f"{k!r} instead."
            )

    def fit(self, X: Any, y: Any) -> KNeighborsScorer:
        """Persist the reference rows and their labels (or target) as blocks.

        Parameters
        ----------
        X : dask array, dask DataFrame, numpy array or DataFrame of shape (n_ref, n_features)
            Reference rows, already scaled like the queries will be.
        y : dask array, dask Series, numpy array or Series of shape (n_ref,)
            Label of each reference row (e.g. ``KMeans.labels_``) for ``task='classify'``,
            or a numeric target for ``task='regress'``.

        Returns
        -------
        self : KNeighborsScorer
        """
        self._validate_params()
        owner = type(self).__name__
        y = as_vector(y, owner)
        n_rows = known_rows(X)
        if n_rows is not None and not np.isnan(y.shape[0]) and y.shape[0] != n_rows:
            raise InputError(
                f"The 'y' parameter of {owner}.fit must have one value per row of X "
                f"({n_rows} rows). Got {y.shape[0]} values instead."
            )
        if n_rows is not None:
            self._check_k(self.n_neighbors, n_rows)
        if self.task == "classify":
            classes, labels, ldtype = encode_labels(y, owner)
        else:
            if y.dtype.kind not in "biuf":
                raise InputError(
                    f"{owner}: y must be numeric for task='regress'; got dtype {y.dtype}."
                )
            classes, labels, ldtype = None, y, np.float64
        prep = prepare_input(X, owner=owner, labels=labels, labels_dtype=ldtype, labels_name="y")
        bs = load_blocks(prep, owner=owner)
        try:
            self._check_k(self.n_neighbors, bs.n_samples)
            if classes is None:
                n_bad = sum(bs.map(_count_nonfinite))
                if n_bad:
                    raise InputError(
                        f"{owner}: y has {n_bad} NaN or infinite value(s); the regression "
                        "target must be finite."
                    )
        except Exception:
            bs.release()
            raise
        return self._set_reference(bs, classes, prep.feature_names)

    def _set_reference(
        self, bs: BlockSet, classes: np.ndarray | None, names: list[str] | None
    ) -> KNeighborsScorer:
        # an earlier fit's blocks are freed when nothing (no lazy result) refers to them
        fill = 0 if classes is not None else np.nan
        self._ref = kg.Reference.from_blocks(bs, fill, self.algorithm)
        if classes is not None:
            self.classes_ = classes
        elif hasattr(self, "classes_"):
            del self.classes_
        self.n_features_in_ = bs.n_features
        self.n_samples_fit_ = bs.n_samples
        self.search_stats_: dict[str, Any] = {}
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    # ------------------------------------------------------------------ queries
    def _query_array(self, X: Any) -> tuple[Any, bool]:
        """Queries as a dask array with one column chunk, and whether they were in memory."""
        import dask.array as da

        check_is_fitted(self, "n_samples_fit_")
        X, in_memory = as_feature_array(
            X,
            type(self).__name__,
            n_features=self.n_features_in_,
            feature_names=self._feature_names(),
            param="X",
            dtype=self._ref.blocks.dtype,
        )
        if in_memory:
            rows = min(max(X.shape[0], 1), QUERY_BLOCK_ROWS)
            return da.from_array(X, chunks=(rows, -1)), True
        if any(np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        return X, False

    def _resolve_k(self, n_neighbors: int | None) -> int:
        if n_neighbors is None:
            return self.n_neighbors
        check_interval(
            n_neighbors, "n_neighbors", type(self).__name__, kind=numbers.Integral, low=1
        )
        self._check_k(n_neighbors, self.n_samples_fit_)
        return int(n_neighbors)

    def _last_search(self, stats: Any) -> None:
        # updated in place: a query does not change the estimator's attributes (__dict__)
        self.search_stats_.clear()
        self.search_stats_.update(stats if isinstance(stats, dict) else {"delayed": stats})

    def _feature_names(self) -> list[str] | None:
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else list(names)

    def _outputs(self, X: Any, k: int, func, args: tuple, specs: list[tuple]) -> list:
        """``func(merged, *args)`` per query block, as one lazy array per output
        ``(dtype, n_columns or None)``; computed when the queries were in memory."""
        Xq, in_memory = self._query_array(X)
        merged, mode = kg.search(self._ref, Xq, k, self._feature_names())
        results = kg.per_block(merged, func, *args)
        arrays = kg.to_arrays(results, Xq.chunks[0], specs)
        self._last_search(kg.search_stats(merged, mode))
        if not in_memory:
            return arrays
        *arrays, stats = dask.compute(*arrays, self.search_stats_["delayed"])
        self._last_search(stats)
        logger.debug(
            "KNN search (%s): %d of %d distances computed, pruning skipped %.1f%%",
            stats["mode"],
            stats["computed"],
            stats["total"],
            100.0 * stats["skipped_fraction"],
        )
        return list(arrays)

    # ------------------------------------------------------------------ public queries
    def kneighbors(
        self, X: Any, n_neighbors: int | None = None, return_distance: bool = True
    ) -> Any:
        """The nearest reference rows of every query row.

        Parameters
        ----------
        X : dask array, dask DataFrame, numpy array or DataFrame of shape (n, n_features)
        n_neighbors : int, optional
            Defaults to the estimator's ``n_neighbors``.
        return_distance : bool, default=True

        Returns
        -------
        distances : array of shape (n, n_neighbors), float64
            Euclidean distances, ascending (only when ``return_distance``).
        indices : array of shape (n, n_neighbors), int64
            Global positions of the neighbours in the reference rows; equal distances are ordered by
            the lower position. Dask arrays for dask input, numpy arrays otherwise.
        """
        check_is_fitted(self, "n_samples_fit_")
        k = self._resolve_k(n_neighbors)
        specs = [(np.float64, k), (np.int64, k)]
        dist, ind = self._outputs(X, k, kg.neighbours, (), specs)
        return (dist, ind) if return_distance else ind

    def predict(self, X: Any) -> Any:
        """Predicted label (``classify``) or weighted mean target (``regress``) per row."""
        check_is_fitted(self, "n_samples_fit_")
        k = self.n_neighbors
        if self.task == "regress":
            args = (self.weights,)
            return self._outputs(X, k, kg.mean_target, args, [(np.float64, None)])[0]
        args = (self.classes_, self.weights)
        return self._outputs(X, k, kg.vote_labels, args, [(self.classes_.dtype, None)])[0]

    def predict_proba(self, X: Any) -> Any:
        """Share of neighbour weight per class, shape (n, n_classes), columns in ``classes_``."""
        check_is_fitted(self, "n_samples_fit_")
        if self.task != "classify":
            raise AttributeError("predict_proba is only available with task='classify'.")
        args = (self.classes_, self.weights)
        specs = [(np.float64, len(self.classes_))]
        return self._outputs(X, self.n_neighbors, kg.vote_proba, args, specs)[0]

    def score_frame(self, X: Any, ids: Any = None, *, id_column: str = "id") -> Any:
        """Scores of every query row as a lazy dask DataFrame.

        Parameters
        ----------
        X : dask array, dask DataFrame, numpy array or DataFrame of shape (n, n_features)
        ids : array-like, dask array or dask Series of shape (n,), optional
            Row identifiers, aligned with ``X``; default: the row positions.
        id_column : str, default='id'

        Returns
        -------
        dask.dataframe.DataFrame
            One row per query row, index = query row position, columns ``id_column``,
            ``knn_label`` and ``vote_share`` (``classify``: share of the neighbour weight
            that went to the predicted label) or ``knn_mean`` (``regress``), then
            ``kth_distance`` (Euclidean distance to the k-th neighbour, an outlier score)
            and ``mean_distance`` (mean distance to the k neighbours).
        """
        check_is_fitted(self, "n_samples_fit_")
        Xq, _ = self._query_array(X)
        merged, mode = kg.search(self._ref, Xq, self.n_neighbors, self._feature_names())
        self._last_search(kg.search_stats(merged, mode))
        if self.task == "classify":
            args = (kg.vote_columns, self.classes_, self.weights)
            cols = {"knn_label": self.classes_.dtype, "vote_share": np.float64}
        else:
            args = (kg.mean_columns, self.weights)
            cols = {"knn_mean": np.float64}
        results = kg.per_block(merged, *args)
        columns = {id_column: None, **cols, "kth_distance": np.float64, "mean_distance": np.float64}
        return kg.to_frame(results, Xq.chunks[0], ids, columns, type(self).__name__)


# --------------------------------------------------------------------------- fit helpers


def _count_nonfinite(block: Block) -> int:
    return int((~np.isfinite(block.labels)).sum())


def fit_on_blocks(scorer: KNeighborsScorer, bs: BlockSet, y: list) -> KNeighborsScorer:
    """Fit ``scorer`` on reference blocks already built and checked (persisted or streamed)
    with ``y`` given per block (handles from :meth:`BlockSet.map_keep` or
    :meth:`BlockSet.map_values`, e.g. the k-means labels): no data moves and, for streamed
    blocks, nothing is held but ``y``.
    """
    scorer._validate_params()
    owner = type(scorer).__name__
    scorer._check_k(scorer.n_neighbors, bs.n_samples)
    if scorer.task == "classify":
        uniq = bs.gather(bs.map_values(unique, y))
        classes = np.unique(np.concatenate(uniq))
        if classes.dtype.kind == "f" and np.isnan(classes).any():
            raise InputError(f"{owner}: y contains NaN; every reference row needs a label.")
        labels = bs.map_values(codes_block, y, classes=classes)
    else:
        n_bad = sum(bs.gather(bs.map_values(n_nonfinite, y)))
        if n_bad:
            raise InputError(
                f"{owner}: y has {n_bad} NaN or infinite value(s); the regression target "
                "must be finite."
            )
        classes, labels = None, y
    return scorer._set_reference(bs.with_labels(labels), classes, bs.feature_names)
