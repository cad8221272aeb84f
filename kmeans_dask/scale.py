"""StandardScaler fitted in one map-reduce pass (Chan et al.'s parallel mean/variance)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .engine.prepare import prepare_input
from .exceptions import InputError, InvalidParameterError
from .kernels import moments as kernels
from .validation import (
    check_array,
    check_dask_array,
    check_finite,
    check_n_features,
    float_dtype,
    is_dask_array,
    is_dask_frame,
    magnitude_error,
    nonfinite_error,
    select_features,
)

__all__ = ["StandardScaler"]


def _moments_part(part: Any, dtype: np.dtype) -> tuple:
    X = part.to_numpy(dtype=dtype) if hasattr(part, "to_numpy") else np.asarray(part, dtype=dtype)
    return kernels.moments(X)


def _finite_block(x: np.ndarray, owner: str, block_info: dict | None = None) -> np.ndarray:
    # lazy input is checked block by block, where the values are (rows counted globally)
    row0 = block_info[0]["array-location"][0][0] if block_info else 0
    check_finite(x, owner, row0=row0)
    return x


class StandardScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardise features to zero mean and unit variance, fitted in one pass over chunks.

    Each chunk contributes (count, mean, M2); the partials are merged with Chan et al.'s
    formula, so the result equals a single-pass variance over all rows (population
    variance, ``ddof=0``, as scikit-learn's). Constant columns get ``scale_ = 1``.
    NaN or infinity raise an error that names the column (in ``fit``, and in ``transform``:
    at once for in-memory input, per block when a dask array is computed), and so do values
    whose squares summed over the rows would overflow float64
    (:func:`~kmeans_dask.validation.max_abs_limit` with one feature).

    Parameters
    ----------
    with_mean : bool, default=True
        Centre the data.
    with_std : bool, default=True
        Scale to unit variance.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) (float64)
    var_ : ndarray of shape (n_features,) (float64)
    scale_ : ndarray of shape (n_features,) (float64)
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str (when fitted on a DataFrame)
    """

    def __init__(self, *, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean = with_mean
        self.with_std = with_std

    def fit(self, X: Any, y: Any = None) -> StandardScaler:
        """Compute mean and standard deviation per feature in one pass over the chunks.

        Parameters
        ----------
        X : array-like, dask array or dask DataFrame of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : StandardScaler
        """
        import dask

        owner = type(self).__name__
        prep = prepare_input(X, owner=owner)
        if prep.in_memory:
            results = [_moments_part(p, prep.dtype) for p in prep.parts]
        else:
            task = dask.delayed(_moments_part, pure=True)
            results = dask.compute(*[task(p, prep.dtype) for p in prep.parts])
        acc = (0, np.zeros(prep.n_features), np.zeros(prep.n_features))
        n_nan = np.zeros(prep.n_features, dtype=np.int64)
        n_inf = np.zeros(prep.n_features, dtype=np.int64)
        max_abs = np.zeros(prep.n_features)
        for n, mean, m2, nn, ni, ma in results:
            acc = kernels.merge_moments(acc, (n, mean, m2))
            n_nan += nn
            n_inf += ni
            np.maximum(max_abs, ma, out=max_abs)
        err = nonfinite_error(n_nan, n_inf, prep.feature_names, owner)
        if err is not None:
            raise err
        n, mean, m2 = acc
        # a column's M2 sums n squared deviations in float64 (one feature per sum)
        err = magnitude_error(max_abs, prep.feature_names, owner, np.float64, n, n_features=1)
        if err is not None:
            raise err
        if n == 0:
            raise InputError(
                f"Found array with 0 sample(s) (shape=(0, {prep.n_features})) while a minimum "
                f"of 1 is required by {owner}."
            )
        return self._set_moments(n, mean, m2, prep.feature_names)

    @classmethod
    def from_moments(
        cls,
        n: int,
        mean: Any,
        m2: Any,
        *,
        feature_names: list[str] | None = None,
        with_mean: bool = True,
        with_std: bool = True,
    ) -> StandardScaler:
        """A scaler fitted from merged column moments (count, mean, sum of squared
        deviations), e.g. those of persisted or streamed blocks: the same result as
        :meth:`fit` on the rows that gave them (inputs already checked, ``n >= 1``)."""
        sc = cls(with_mean=with_mean, with_std=with_std)
        mean = np.asarray(mean, dtype=np.float64)
        return sc._set_moments(int(n), mean, np.asarray(m2, dtype=np.float64), feature_names)

    def _set_moments(
        self, n: int, mean: np.ndarray, m2: np.ndarray, names: list[str] | None
    ) -> StandardScaler:
        var = m2 / n
        # constant columns (variance lost in rounding) get scale 1, as scikit-learn does
        eps = 10 * np.finfo(np.float64).eps
        const = var <= eps * np.maximum(mean * mean, 1.0)
        self.mean_ = mean if self.with_mean else None
        self.var_ = var if self.with_std else None
        self.scale_ = np.where(const, 1.0, np.sqrt(var)) if self.with_std else None
        self.n_samples_seen_ = int(n)
        self.n_features_in_ = int(mean.shape[0])
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    @classmethod
    def from_stats(
        cls,
        mean: Any,
        scale: Any,
        *,
        var: Any = None,
        n_samples_seen: int = 0,
        feature_names: list[str] | None = None,
    ) -> StandardScaler:
        """A fitted scaler from stored statistics (e.g. a reloaded model); ``None`` for
        ``mean``/``scale`` means no centring/scaling."""
        sc = cls(with_mean=mean is not None, with_std=scale is not None)
        sc.mean_ = None if mean is None else np.asarray(mean, dtype=np.float64)
        sc.scale_ = None if scale is None else np.asarray(scale, dtype=np.float64)
        sc.var_ = None if var is None else np.asarray(var, dtype=np.float64)
        ref = sc.mean_ if sc.mean_ is not None else sc.scale_
        if ref is None:
            raise InvalidParameterError(
                "StandardScaler.from_stats needs 'mean' or 'scale' (or both); got neither."
            )
        sc.n_features_in_ = int(ref.shape[0])
        sc.n_samples_seen_ = int(n_samples_seen)
        if feature_names is not None:
            sc.feature_names_in_ = np.asarray(list(feature_names), dtype=object)
        return sc

    def _affine(self, X: Any, inverse: bool) -> Any:
        check_is_fitted(self, "n_samples_seen_")
        mean = self.mean_ if self.mean_ is not None else 0.0
        scale = self.scale_ if self.scale_ is not None else 1.0
        names = getattr(self, "feature_names_in_", None)
        owner = type(self).__name__
        if is_dask_frame(X) or isinstance(X, pd.DataFrame | pd.Series):
            # frames stay frames (columns kept), selected by the fitted names
            X, cols, _ = select_features(X, None if names is None else list(names), owner)
            check_n_features(X.shape[1], self.n_features_in_, owner)
            if not is_dask_frame(X):
                check_finite(X.to_numpy(dtype=np.float64), owner, cols)
            return X * scale + mean if inverse else (X - mean) / scale
        if is_dask_array(X):
            X = check_dask_array(X, owner)
            check_n_features(int(X.shape[1]), self.n_features_in_, owner)
            X = X.map_blocks(_finite_block, owner, dtype=X.dtype)
        else:
            X = check_array(X, owner)
            check_n_features(X.shape[1], self.n_features_in_, owner)
            check_finite(X, owner)
        dt = float_dtype(X.dtype)
        X = X.astype(dt)
        m = np.asarray(mean, dtype=dt)
        s = np.asarray(scale, dtype=dt)
        return X * s + m if inverse else (X - m) / s

    def transform(self, X: Any) -> Any:
        """Standardise ``X`` (lazily for dask input); float32 stays float32."""
        return self._affine(X, inverse=False)

    def inverse_transform(self, X: Any) -> Any:
        """Undo :meth:`transform`."""
        return self._affine(X, inverse=True)
