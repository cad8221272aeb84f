"""Stable segment IDs: the pure rules (numpy and scipy, no Dask, no I/O).

A run's k-means clusters come out in an arbitrary order (whatever the initialisation gave);
the IDs people see follow the previous committed run of the same job instead:

* :func:`match_centres` pairs the previous run's centroids with the new ones by an optimal
  assignment (:func:`scipy.optimize.linear_sum_assignment`) on euclidean distances measured
  in one space (the caller maps the previous centroids into the new run's scaled space);
  pairs farther apart than ``max_distance`` are not forced together.
* :func:`segment_ids` gives matched clusters the previous ID and every other cluster a fresh
  ID (``next_id``, ``next_id + 1``, ... by size among themselves); without a previous run this
  numbers the clusters by size, largest = 0 (ties by raw cluster index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["Matching", "by_size", "match_centres", "segment_ids"]


@dataclass(frozen=True)
class Matching:
    """Pairs of a matching: ``current[i]`` (raw index of a new cluster) takes the place of
    ``previous[i]`` (row of a previous centroid); ``distance[i]`` is how far apart they are."""

    current: np.ndarray
    previous: np.ndarray
    distance: np.ndarray

    @classmethod
    def empty(cls) -> Matching:
        """No pairs (a first run)."""
        none = np.zeros(0, dtype=np.intp)
        return cls(none, none, np.zeros(0))


def distances(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Euclidean distances, shape ``(len(previous), len(current))`` (computed directly, not
    by the expanded form: exact for nearby centroids)."""
    diff = np.asarray(previous, np.float64)[:, None, :] - np.asarray(current, np.float64)[None]
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def match_centres(
    previous: np.ndarray, current: np.ndarray, max_distance: float = np.inf
) -> Matching:
    """Optimal one-to-one matching of previous centroids to current ones.

    Parameters
    ----------
    previous : ndarray of shape (m, d)
    current : ndarray of shape (k, d)
        Both in the same space; ``m`` and ``k`` may differ (``min(m, k)`` pairs at most).
    max_distance : float
        Pairs farther apart are dropped (never forced). The assignment first maximises the
        number of pairs within ``max_distance``, then minimises their total distance: a
        pair beyond it costs more than all pairs within it together, so a far pair never
        displaces two near ones.

    Returns
    -------
    Matching
        Sorted by ``current``.
    """
    d = distances(previous, current)
    if d.size == 0:
        return Matching.empty()
    cost = d
    if np.isfinite(max_distance):
        big = min(d.shape) * float(max_distance) + 1.0
        cost = np.where(d <= max_distance, d, big)
    rows, cols = linear_sum_assignment(cost)
    keep = d[rows, cols] <= max_distance
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(cols, kind="stable")
    return Matching(cols[order], rows[order], d[rows, cols][order])


def by_size(sizes: np.ndarray) -> np.ndarray:
    """Raw cluster indices ordered by size, largest first (ties: lower index first)."""
    sizes = np.asarray(sizes)
    return np.lexsort((np.arange(len(sizes)), -sizes.astype(np.int64)))


def segment_ids(
    sizes: np.ndarray,
    matching: Matching,
    previous_ids: np.ndarray,
    next_id: int,
) -> np.ndarray:
    """The ID of every new cluster (indexed by raw cluster index).

    Parameters
    ----------
    sizes : ndarray of shape (k,)
        Rows per new cluster (orders the unmatched ones).
    matching : Matching
        From :func:`match_centres` (``previous`` indexes ``previous_ids``).
    previous_ids : ndarray of shape (m,)
        The ID of each previous centroid.
    next_id : int
        The lowest ID never used by this job; unmatched clusters take ``next_id, next_id +
        1, ...``, largest first. A first run passes an empty matching and 0: numbered by
        size, largest = 0.

    Returns
    -------
    ndarray of int64, shape (k,)
        Distinct IDs.
    """
    k = len(sizes)
    ids = np.full(k, -1, dtype=np.int64)
    ids[matching.current] = np.asarray(previous_ids, dtype=np.int64)[matching.previous]
    fresh = [int(i) for i in by_size(sizes) if ids[i] < 0]
    ids[fresh] = next_id + np.arange(len(fresh), dtype=np.int64)
    return ids
