"""The M-step of a Lloyd iteration on the driver: new centres from the E-step's partial sums,
empty clusters re-seeded with the farthest rows first (scikit-learn's rule). Numpy only."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["m_step", "relocate_empty", "select_farthest"]


def relocate_empty(
    sums: np.ndarray,
    wsum: np.ndarray,
    empty: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
) -> None:
    """Give each empty cluster one of the farthest rows, in place (scikit-learn's rule).

    ``rows``/``labels``/``weights`` are the farthest rows (farthest first), their current
    cluster and their weight; each is moved out of its cluster's partial sums and becomes
    the sole member of an empty cluster.
    """
    for e, x, lab, wi in zip(empty, rows, labels, weights, strict=False):
        sums[lab] -= wi * x
        wsum[lab] -= wi
        sums[e] = wi * x
        wsum[e] = wi


def select_farthest(
    parts: Sequence[tuple], m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``m`` farthest rows over several chunks' :func:`farthest_points` results.

    Ordered by decreasing distance, then increasing global index (deterministic for any
    chunking). Returns ``(rows, labels, weights)``.
    """
    dist = np.concatenate([p[0] for p in parts])
    gidx = np.concatenate([p[1] for p in parts])
    order = np.lexsort((gidx, -dist))[:m]
    rows = np.concatenate([p[2] for p in parts])[order]
    labels = np.concatenate([p[3] for p in parts])[order]
    weights = np.concatenate([p[4] for p in parts])[order]
    return rows, labels, weights


def m_step(
    C: np.ndarray,
    sums: np.ndarray,
    wsum: np.ndarray,
    farthest: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, float, int]:
    """New centres from the E-step partials, empty clusters re-seeded first.

    ``farthest(m)`` returns the ``m`` rows farthest from their centre (see
    :func:`select_farthest`); it is only called when a cluster is empty. ``sums``/``wsum``
    are updated in place by the relocation. Returns ``(new centres in C's dtype, squared
    centre shift, number of empty clusters)``.
    """
    empty = np.flatnonzero(wsum <= 0)
    if empty.size:
        relocate_empty(sums, wsum, empty, *farthest(int(empty.size)))
    filled = wsum > 0
    C_new = C.copy()
    C_new[filled] = (sums[filled] / wsum[filled, None]).astype(C.dtype)
    shift = float(((C_new.astype(np.float64) - C.astype(np.float64)) ** 2).sum())
    return C_new, shift, int(empty.size)

