"""Validation at the boundary: parameters and input data, checked once with clear messages.

Private compute functions downstream assume what is checked here.
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from .blocks import BlockSet, get_client, plan_sizes, target_block_bytes
from .exceptions import InputError, InvalidParameterError

__all__ = [
    "PreparedInput",
    "check_array",
    "check_interval",
    "check_options",
    "check_random_state",
    "load_blocks",
    "prepare_input",
    "seed_from",
]


# --------------------------------------------------------------------------- parameters


def check_interval(
    value: Any,
    name: str,
    owner: str,
    *,
    kind: type = numbers.Real,
    low: float | None = None,
    high: float | None = None,
    closed: str = "both",
) -> None:
    """Raise InvalidParameterError unless ``value`` is a ``kind`` in the given interval.

    The message follows scikit-learn's: ``The 'n_clusters' parameter of KMeans must be an
    int in the range [1, inf). Got 0 instead.``
    """
    type_name = "an int" if kind is numbers.Integral else "a float"
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    left = "[" if closed in ("both", "left") and low is not None else "("
    right = "]" if closed in ("both", "right") and high is not None else ")"
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        if low is not None:
            ok = value >= low if left == "[" else value > low
        if ok and high is not None:
            ok = value <= high if right == "]" else value < high
    if not ok:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {type_name} in the range "
            f"{left}{lo}, {hi}{right}. Got {value!r} instead."
        )


def check_options(value: Any, name: str, owner: str, options: tuple) -> None:
    """Raise InvalidParameterError unless ``value`` is one of ``options``."""
    if not isinstance(value, str) or value not in options:
        allowed = ", ".join(repr(o) for o in options)
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be one of {allowed}. Got {value!r} instead."
        )


def check_random_state(random_state: Any, owner: str) -> None:
    """Raise InvalidParameterError unless ``random_state`` is None, an int, a RandomState or
    a Generator (without drawing from it)."""
    ok = random_state is None or isinstance(
        random_state, np.random.RandomState | np.random.Generator
    )
    ok = ok or (isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool))
    if not ok:
        raise InvalidParameterError(
            f"The 'random_state' parameter of {owner} must be an int, a numpy RandomState or "
            f"Generator, or None. Got {random_state!r} instead."
        )


def seed_from(random_state: Any) -> int:
    """An integer seed from ``random_state`` (None, int, RandomState or Generator)."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**63))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state) % (2**63)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    raise InvalidParameterError(
        "The 'random_state' parameter must be an int, a numpy RandomState or Generator, "
        f"or None. Got {random_state!r} instead."
    )


# --------------------------------------------------------------------------- input data


@dataclass
class PreparedInput:
    """Input split into row parts, ready to persist as blocks."""

    kind: str  # "numpy" (in-memory parts) or "delayed"
    parts: list
    weight_parts: list | None
    sizes: list[int] | None  # rows per part when known
    row_chunks: tuple | None  # the caller's own row chunking (to align outputs)
    dtype: np.dtype
    n_features: int
    feature_names: list[str] | None
    lazy: bool  # the caller passed a dask collection
    label_parts: list | None = None  # cluster labels aligned with the parts (metrics)


def _is_dask_array(X: Any) -> bool:
    import dask.array as da

    return isinstance(X, da.Array)


def _is_dask_frame(X: Any) -> bool:
    import dask.dataframe as dd

    return isinstance(X, dd.DataFrame | dd.Series)


def _resolve_dtype(dtypes: list, columns: list[str], owner: str) -> np.dtype:
    """float32 if every column is float32, else float64; non-numeric columns are named."""
    from pandas.api.types import is_complex_dtype, is_numeric_dtype

    for col, dt in zip(columns, dtypes, strict=True):
        if not is_numeric_dtype(dt) or is_complex_dtype(dt):
            raise InputError(
                f"{owner}: column {col} has dtype {dt}, which is not numeric. Select numeric "
                f"feature columns, or encode {col} as numbers first."
            )
    if dtypes and all(str(dt) == "float32" for dt in dtypes):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _column_label(names: list[str] | None, j: int) -> str:
    return f"{names[j]!r}" if names is not None else f"{j}"


def check_array(X: Any, owner: str) -> np.ndarray:
    """An in-memory 2-D numeric, non-empty array from array-like ``X`` (no copy if possible)."""
    try:
        arr = np.asarray(X)
    except Exception as exc:  # pragma: no cover - defensive
        raise InputError(f"{owner}: could not convert X to an array ({exc}).") from exc
    if arr.ndim != 2:
        raise InputError(
            f"{owner}: expected a 2-D array of shape (n_samples, n_features), got "
            f"{arr.ndim}-D with shape {arr.shape}. Reshape 1-D data with "
            "X.reshape(-1, 1) for a single feature."
        )
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{owner}: X has dtype {arr.dtype}, which is not numeric; {owner} needs numeric "
            "features."
        )
    if arr.shape[0] == 0:
        raise InputError(
            f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is "
            f"required by {owner}."
        )
    if arr.shape[1] == 0:
        raise InputError(
            f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
            f"required by {owner}."
        )
    return arr


def prepare_input(
    X: Any,
    sample_weight: Any = None,
    *,
    owner: str,
    feature_names: list[str] | None = None,
    n_threads: int | None = None,
    labels: Any = None,
    labels_dtype: Any = np.int64,
    labels_name: str = "labels",
) -> PreparedInput:
    """Check type, shape and dtypes of ``X`` (no pass over the data) and split it into parts.

    numpy arrays, pandas DataFrames, dask arrays and dask DataFrames are accepted. float32
    stays float32; other numeric types become float64. ``feature_names`` selects columns
    of a DataFrame by name (the names seen in ``fit``). ``labels`` (one value per row) are
    split along with ``X`` and cast to ``labels_dtype`` (int64 cluster labels by default, or
    float64 for a numeric target); ``labels_name`` is the parameter name used in errors.
    """
    import dask.array as da
    import pandas as pd

    if n_threads is None:
        client = get_client()
        n_threads = sum(client.nthreads().values()) if client is not None else 1
    target = target_block_bytes()
    names: list[str] | None = None

    if _is_dask_frame(X) or isinstance(X, pd.DataFrame | pd.Series):
        if isinstance(X, pd.Series) or (_is_dask_frame(X) and X.ndim == 1):
            X = X.to_frame()
        cols = [str(c) for c in X.columns]
        if feature_names is not None:
            missing = [c for c in feature_names if c not in cols]
            if missing:
                raise InputError(
                    f"{owner}: X has no column(s) {missing}; it was fitted on columns "
                    f"{list(feature_names)}."
                )
            X = X[list(feature_names)]
            cols = list(feature_names)
        dtype = _resolve_dtype(list(X.dtypes), [repr(c) for c in cols], owner)
        names = cols
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy(dtype=dtype)
        elif sample_weight is not None or labels is not None:
            # aligning weights needs the partition lengths: one extra pass, only in this case
            X = X.to_dask_array(lengths=True)
        else:
            parts = list(X.to_delayed(optimize_graph=False))
            return PreparedInput(
                "delayed", parts, None, None, None, dtype, len(cols), names, lazy=True
            )

    if _is_dask_array(X):
        if X.ndim != 2:
            raise InputError(f"{owner}: expected a 2-D array, got {X.ndim}-D with shape {X.shape}.")
        if X.dtype.kind not in "biuf":
            raise InputError(f"{owner}: X has dtype {X.dtype}, which is not numeric.")
        dtype = np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)
        if feature_names is None and names is None and X.shape[1] == 0:
            raise InputError(f"{owner}: X has 0 features; at least 1 is required.")
        row_chunks = X.chunks[0]
        known = not any(np.isnan(c) for c in row_chunks)
        X = X.rechunk({1: -1})
        if known and target is not None:
            plan = plan_sizes(int(X.shape[0]), X.shape[1] * dtype.itemsize, n_threads, target)
            X = X.rechunk({0: tuple(plan)})
        parts = list(X.to_delayed(optimize_graph=False)[:, 0])

        def aligned(v: Any, name: str, dtype: Any) -> list:
            if not _is_dask_array(v):
                v = np.asarray(v, dtype=dtype)
                _check_weight_shape(v, X.shape[0], owner, name)
                v = da.from_array(v, chunks=(X.chunks[0],))
            else:
                _check_weight_shape(v, X.shape[0], owner, name)
                v = v.astype(dtype).rechunk((X.chunks[0],))
            return list(v.to_delayed(optimize_graph=False))

        wparts = None if sample_weight is None else aligned(sample_weight, "sample_weight", float)
        lparts = None if labels is None else aligned(labels, labels_name, labels_dtype)
        sizes = list(X.chunks[0]) if known else None
        return PreparedInput(
            "delayed",
            parts,
            wparts,
            sizes,
            tuple(row_chunks) if known else None,
            dtype,
            int(X.shape[1]),
            names,
            lazy=True,
            label_parts=lparts,
        )

    arr = check_array(X, owner)
    dtype = np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)
    n, d = arr.shape
    sizes = plan_sizes(n, d * dtype.itemsize, n_threads, target or 1 << 62)
    bounds = np.cumsum([0, *sizes])
    parts = [arr[a:b] for a, b in itertools.pairwise(bounds)]

    def split(v: Any, name: str, dtype: Any) -> list:
        v = np.asarray(v.compute() if hasattr(v, "compute") else v, dtype=dtype)
        _check_weight_shape(v, n, owner, name)
        return [v[a:b] for a, b in itertools.pairwise(bounds)]

    wparts = None if sample_weight is None else split(sample_weight, "sample_weight", float)
    lparts = None if labels is None else split(labels, labels_name, labels_dtype)
    return PreparedInput(
        "numpy", parts, wparts, sizes, None, dtype, d, names, lazy=False, label_parts=lparts
    )


def _check_weight_shape(w: Any, n: Any, owner: str, name: str = "sample_weight") -> None:
    if w.ndim != 1 or (not np.isnan(w.shape[0]) and not np.isnan(n) and w.shape[0] != n):
        raise InputError(
            f"{owner}: {name} must be 1-D with one value per row of X "
            f"({n} rows); got shape {w.shape}."
        )


def load_blocks(prep: PreparedInput, *, owner: str, client: Any | None = None) -> BlockSet:
    """Persist the prepared input and check it (NaN/inf per column, weights, emptiness)."""
    bs = BlockSet.from_parts(
        prep.parts,
        prep.weight_parts,
        prep.dtype,
        prep.n_features,
        prep.kind,
        label_parts=prep.label_parts,
        sizes=prep.sizes,
        client=client,
    )
    try:
        _check_summaries(bs, prep, owner)
    except Exception:
        bs.release()
        raise
    return bs


def _check_summaries(bs: BlockSet, prep: PreparedInput, owner: str) -> None:
    if bs.n_samples == 0:
        raise InputError(
            f"Found array with 0 sample(s) (shape=(0, {prep.n_features})) while a minimum of "
            f"1 is required by {owner}."
        )
    n_nan = sum(s.n_nan for s in bs.summaries)
    n_inf = sum(s.n_inf for s in bs.summaries)
    for what, counts in (("NaN", n_nan), ("infinity", n_inf)):
        bad = np.flatnonzero(counts)
        if bad.size:
            cols = ", ".join(
                f"{_column_label(prep.feature_names, j)} ({int(counts[j])} values)" for j in bad[:5]
            )
            more = f" and {bad.size - 5} more" if bad.size > 5 else ""
            raise InputError(
                f"Input X contains {what} in column {cols}{more}; {owner} needs finite values. "
                "Drop or impute those rows first."
            )
    if bs.weighted:
        n_bad = sum(s.n_bad_weight for s in bs.summaries)
        if n_bad:
            raise InputError(
                f"{owner}: sample_weight has {n_bad} negative or non-finite value(s); "
                "weights must be finite and >= 0."
            )
        if sum(s.weight_sum for s in bs.summaries) <= 0:
            raise InputError(f"{owner}: sample_weight sums to 0; at least one weight must be > 0.")
