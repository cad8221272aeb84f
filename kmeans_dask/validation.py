"""Validation at the boundary: parameters and input data, checked once with clear messages.

Private compute functions downstream assume what is checked here.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .exceptions import InputError, InvalidParameterError

__all__ = [
    "check_array",
    "check_interval",
    "check_options",
    "check_random_state",
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
