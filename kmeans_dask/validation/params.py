"""Estimator and function parameters at the boundary, worded the scikit-learn way."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["check_interval", "check_options", "check_random_state", "seed_from"]


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
