"""Input data at the boundary: column selection, the dtype rule, shapes, NaN/inf and
magnitudes, each checked in this one place with messages that name the column."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..exceptions import InputError, InputTypeError

__all__ = [
    "as_feature_array",
    "check_array",
    "check_dask_array",
    "check_finite",
    "check_magnitude",
    "check_n_features",
    "check_vector_shape",
    "column_label",
    "float_dtype",
    "is_dask_array",
    "is_dask_frame",
    "magnitude_error",
    "max_abs_limit",
    "nonfinite_error",
    "select_features",
]


def is_dask_array(X: Any) -> bool:
    """True for a dask array."""
    import dask.array as da

    return isinstance(X, da.Array)


def is_dask_frame(X: Any) -> bool:
    """True for a dask DataFrame or Series."""
    import dask.dataframe as dd

    return isinstance(X, dd.DataFrame | dd.Series)


def _is_frame(X: Any) -> bool:
    import pandas as pd

    return is_dask_frame(X) or isinstance(X, pd.DataFrame | pd.Series)


def float_dtype(dtype: Any) -> np.dtype:
    """The working dtype: float32 stays float32, every other number becomes float64."""
    return np.dtype(np.float32) if np.dtype(dtype) == np.float32 else np.dtype(np.float64)


def column_label(names: list[str] | None, j: int) -> str:
    """How errors name column ``j``: its name when known, else its position."""
    return f"{names[j]!r}" if names is not None else f"{j}"


def _resolve_dtype(dtypes: list, columns: list[str], owner: str) -> np.dtype:
    from pandas.api.types import is_complex_dtype, is_numeric_dtype

    for col, dt in zip(columns, dtypes, strict=True):
        if not is_numeric_dtype(dt) or is_complex_dtype(dt):
            raise InputError(
                f"{owner}: column {col!r} has dtype {dt}, which is not numeric. Select numeric "
                f"feature columns, or encode {col!r} as numbers first."
            )
    if dtypes and all(str(dt) == "float32" for dt in dtypes):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def select_features(
    X: Any, feature_names: list[str] | None, owner: str, param: str = "X"
) -> tuple[Any, list[str], np.dtype]:
    """Feature columns of a pandas or dask DataFrame (or Series), checked.

    Returns ``(frame, names, dtype)``: the frame restricted to ``feature_names`` (all its
    columns when None), the column names, and the working dtype (float32 if every column is
    float32, else float64). Raises InputError naming a missing or non-numeric column.
    """
    if X.ndim == 1:
        X = X.to_frame()
    cols = [str(c) for c in X.columns]
    if feature_names is not None:
        names = [str(c) for c in feature_names]
        missing = [c for c in names if c not in cols]
        if missing:
            raise InputError(
                f"{owner}: {param} has no column(s) {missing}; it was fitted on columns {names}."
            )
        X = X[names]
    else:
        names = cols
    return X, names, _resolve_dtype(list(X.dtypes), names, owner)


def check_array(X: Any, owner: str, param: str = "X") -> np.ndarray:
    """An in-memory 2-D numeric, non-empty array from array-like ``X`` (no copy if possible).

    Object arrays of numbers are converted (as scikit-learn does); sparse and complex input
    are refused with scikit-learn's wording.
    """
    if hasattr(X, "tocsr") or hasattr(X, "todense"):
        raise InputError(
            f"{owner}: sparse input is not supported; {param} must be a dense array "
            "(call X.toarray() first if it fits in memory)."
        )
    try:
        arr = np.asarray(X)
    except Exception as exc:
        raise InputError(f"{owner}: could not convert {param} to an array ({exc}).") from exc
    if arr.dtype.kind == "c":
        raise InputError(f"Complex data not supported: {owner} needs real-valued {param}.")
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            # a TypeError like numpy's (and scikit-learn's check_array), still an InputError
            raise InputTypeError(
                f"{owner}: {param} has dtype object with values that are not numbers ({exc})."
            ) from exc
    if arr.ndim != 2:
        raise InputError(
            f"{owner}: expected a 2-D array of shape (n_samples, n_features) for {param}, got "
            f"{arr.ndim}-D with shape {arr.shape}. Reshape your data with X.reshape(-1, 1) if "
            "it has a single feature, or X.reshape(1, -1) if it is a single sample."
        )
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{owner}: {param} has dtype {arr.dtype}, which is not numeric; {owner} needs "
            "numeric features."
        )
    for axis, what in ((0, "sample"), (1, "feature")):
        if arr.shape[axis] == 0:
            raise InputError(
                f"Found array with 0 {what}(s) (shape={arr.shape}) while a minimum of 1 is "
                f"required by {owner}."
            )
    return arr


def check_dask_array(X: Any, owner: str, param: str = "X") -> Any:
    """A 2-D numeric dask array (metadata only: no pass over the data)."""
    if X.ndim != 2:
        raise InputError(
            f"{owner}: expected a 2-D array for {param}, got {X.ndim}-D with shape {X.shape}. "
            "Reshape your data with X.reshape(-1, 1) if it has a single feature."
        )
    if X.dtype.kind == "c":
        raise InputError(f"Complex data not supported: {owner} needs real-valued {param}.")
    if X.dtype.kind not in "biuf":
        raise InputError(f"{owner}: {param} has dtype {X.dtype}, which is not numeric.")
    if X.shape[1] == 0:
        raise InputError(f"{owner}: {param} has 0 features; at least 1 is required.")
    return X


def check_n_features(n: int, expected: int, owner: str, param: str = "X") -> None:
    """scikit-learn's message when the number of columns differs from the fitted one."""
    if n != expected:
        raise InputError(
            f"{param} has {n} features, but {owner} is expecting {expected} features as input."
        )


def nonfinite_error(
    n_nan: np.ndarray,
    n_inf: np.ndarray,
    names: list[str] | None,
    owner: str,
    where: str = "",
    param: str = "X",
) -> InputError | None:
    """The error for per-column NaN / infinity counts (None when all are zero).

    ``where`` names the rows (e.g. ``" (first at row 12)"``) when the caller knows them.
    """
    for what, counts in (("NaN", n_nan), ("infinity", n_inf)):
        bad = np.flatnonzero(counts)
        if bad.size:
            cols = ", ".join(
                f"{column_label(names, j)} ({int(counts[j])} values)" for j in bad[:5]
            )
            more = f" and {bad.size - 5} more" if bad.size > 5 else ""
            return InputError(
                f"Input {param} contains {what} in column {cols}{more}{where}; {owner} needs "
                "finite values. Drop or impute those rows first."
            )
    return None


def check_finite(
    arr: np.ndarray, owner: str, names: list[str] | None = None, row0: int = 0, param: str = "X"
) -> None:
    """Raise InputError naming the columns (and the first row) of any NaN/inf in ``arr``."""
    finite = np.isfinite(arr)
    if finite.all():
        return
    cols = np.flatnonzero(~finite.all(axis=0))
    rows = np.flatnonzero(~finite.all(axis=1)) + row0
    labels = [names[j] if names is not None else int(j) for j in cols[:5]]
    more = f" and {cols.size - 5} more" if cols.size > 5 else ""
    raise InputError(
        f"Input {param} contains NaN or infinity in column(s) {labels}{more} ({rows.size} "
        f"row(s), the first is row {int(rows[0])}); {owner} needs finite values. Drop or "
        "impute those rows first."
    )


def max_abs_limit(dtype: Any, n_features: int, n_rows: float = 1.0) -> float:
    """The largest absolute value a feature may hold without overflowing squared distances.

    Two points whose coordinates are at most ``M`` in absolute value (centres lie in the
    data's range) are at squared distance at most ``4 * n_features * M**2``. That value is
    formed in the working ``dtype`` (float32 data: float32 products), and the inertia and
    the variances add up ``n_rows`` of them (weighted: the total weight) in float64. So
    ``M`` must stay below ``sqrt(max(dtype) / (4 * n_features))`` and below
    ``sqrt(max(float64) / (4 * n_features * n_rows))``.

    For float64: about 6.7e153 / sqrt(n_features * n_rows); for float32: about
    9.2e18 / sqrt(n_features) (float64 sums of float32 distances do not overflow).
    """
    d = max(int(n_features), 1)
    per_row = math.sqrt(float(np.finfo(dtype).max) / (4.0 * d))
    summed = math.sqrt(float(np.finfo(np.float64).max) / (4.0 * d * max(float(n_rows), 1.0)))
    return min(per_row, summed)


def magnitude_error(
    max_abs: np.ndarray,
    names: list[str] | None,
    owner: str,
    dtype: Any,
    n_rows: float = 1.0,
    param: str = "X",
    n_features: int | None = None,
) -> InputError | None:
    """The error for columns whose largest absolute value exceeds :func:`max_abs_limit`
    (None when every column is within it). ``max_abs`` holds one value per column;
    ``n_features`` is how many columns add up into one squared value (default: all)."""
    max_abs = np.asarray(max_abs, dtype=np.float64)
    d = max_abs.shape[0] if n_features is None else int(n_features)
    limit = max_abs_limit(dtype, d, n_rows)
    bad = np.flatnonzero(max_abs > limit)
    if not bad.size:
        return None
    cols = ", ".join(f"{column_label(names, j)} (max |value| {max_abs[j]:.3g})" for j in bad[:5])
    more = f" and {bad.size - 5} more" if bad.size > 5 else ""
    rows = f", {n_rows:.4g} rows (or total sample weight)" if n_rows > 1 else ""
    return InputError(
        f"Input {param} has values too large to square and sum in column {cols}{more}: "
        f"with {d} feature(s){rows} in {np.dtype(dtype)}, {owner} needs every |value| <= "
        f"{limit:.3g}, or squared distances, inertia or variances would overflow to inf. "
        "Rescale those columns first (e.g. with StandardScaler, or divide by a power of 10)."
    )


def check_magnitude(
    arr: np.ndarray,
    owner: str,
    names: list[str] | None = None,
    *,
    dtype: Any = None,
    param: str = "X",
) -> None:
    """Raise :func:`magnitude_error` for rows to be compared with centres in ``dtype``
    (default: the working dtype of ``arr``); the bound is per row (``n_rows=1``)."""
    if arr.size == 0:
        return
    dtype = float_dtype(arr.dtype) if dtype is None else np.dtype(dtype)
    # two reductions, no temporary array; float64 before negating (int64's minimum)
    max_abs = np.maximum(
        arr.max(axis=0).astype(np.float64), -arr.min(axis=0).astype(np.float64)
    )
    err = magnitude_error(max_abs, names, owner, dtype, param=param)
    if err is not None:
        raise err


def check_vector_shape(v: Any, n: Any, owner: str, name: str = "sample_weight") -> None:
    """Raise InputError unless ``v`` is 1-D with ``n`` values (unknown lengths pass)."""
    if v.ndim != 1 or (not np.isnan(v.shape[0]) and not np.isnan(n) and v.shape[0] != n):
        raise InputError(
            f"{owner}: {name} must be 1-D with one value per row of X ({n} rows); got "
            f"shape {v.shape}."
        )


def as_feature_array(
    X: Any,
    owner: str,
    *,
    n_features: int,
    feature_names: list[str] | None = None,
    param: str = "X",
    dtype: Any = None,
) -> tuple[Any, bool]:
    """Features of fitted-estimator input (``predict``, ``transform``, KNN queries), checked.

    Returns ``(array, in_memory)``: a finite numpy array whose values are within
    :func:`max_abs_limit` for the fitted model's ``dtype`` (default: the input's working
    dtype), or a dask array with one column chunk (its values are checked per block by the
    caller's task, with :func:`check_finite` and :func:`check_magnitude`). DataFrames are
    selected by ``feature_names``; the number of columns must equal ``n_features``.
    """
    if _is_frame(X):
        X, _, dtype = select_features(X, feature_names, owner, param)
        X = X.to_dask_array(lengths=True) if is_dask_frame(X) else X.to_numpy(dtype=dtype)
    if is_dask_array(X):
        X = check_dask_array(X, owner, param)
        check_n_features(int(X.shape[1]), n_features, owner, param)
        return X.rechunk({1: -1}), False
    arr = check_array(X, owner, param)
    check_n_features(arr.shape[1], n_features, owner, param)
    check_finite(arr, owner, feature_names, param=param)
    check_magnitude(arr, owner, feature_names, dtype=dtype, param=param)
    return arr, True
