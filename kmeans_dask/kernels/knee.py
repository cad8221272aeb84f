"""Knee of a curve by the Kneedle method (Satopaa, Albrecht, Irwin & Raghavan, 2011).

For an elbow curve (inertia falling with K, convex): normalise both axes to [0, 1], flip
the curve so that it rises and is concave, and take the difference to the diagonal. Local
maxima of that difference are knee candidates; a candidate is a knee when the difference
then drops below ``max - S * mean(step of x)`` before the next local maximum (S is the
sensitivity; 1 is the paper's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["Knee", "find_knee"]


@dataclass(frozen=True)
class Knee:
    """Result of :func:`find_knee`: ``x`` is None when no knee exists (``reason`` says why)."""

    x: float | None
    index: int | None
    difference: np.ndarray
    reason: str


def find_knee(
    x: Sequence[float], y: Sequence[float], sensitivity: float = 1.0, decreasing: bool = True
) -> Knee:
    """The knee of a convex curve (``decreasing=True``: an elbow such as inertia vs K).

    Parameters
    ----------
    x, y : sequences of float, same length, ``x`` strictly increasing
    sensitivity : float
        Kneedle's S: larger values need a more pronounced knee.
    decreasing : bool
        True for a falling convex curve (elbow), False for a rising concave one.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise InvalidParameterError(
            f"x and y must be 1-D sequences of the same length; got shapes {xs.shape} and "
            f"{ys.shape}."
        )
    if xs.size < 3:
        return Knee(None, None, np.zeros(xs.size), "fewer than 3 points")
    if np.any(np.diff(xs) <= 0):
        raise InvalidParameterError(f"x must be strictly increasing; got {xs.tolist()}")
    span_y = ys.max() - ys.min()
    if span_y == 0:
        return Knee(None, None, np.zeros(xs.size), "the curve is flat")
    xn = (xs - xs[0]) / (xs[-1] - xs[0])
    yn = (ys - ys.min()) / span_y
    if decreasing:
        yn = 1.0 - yn  # a falling convex curve becomes a rising concave one
    diff = yn - xn
    threshold_step = sensitivity * np.mean(np.diff(xn))
    maxima = [
        i
        for i in range(1, xs.size - 1)
        if diff[i] > diff[i - 1] and diff[i] >= diff[i + 1] and diff[i] > 1e-9
    ]
    for n, i in enumerate(maxima):
        threshold = diff[i] - threshold_step
        stop = maxima[n + 1] if n + 1 < len(maxima) else xs.size
        if np.any(diff[i + 1 : stop] < threshold):
            return Knee(float(xs[i]), i, diff, "kneedle")
    if not maxima:
        return Knee(None, None, diff, "no local maximum of the difference curve (no bend)")
    return Knee(None, None, diff, "the bend is within the sensitivity threshold")
