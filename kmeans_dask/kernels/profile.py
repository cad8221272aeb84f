"""Segment profiles as map-reduce: per block and segment, the count, mean, M2, smallest and
largest value and a fixed-bin histogram of every feature, in original units; merged by adding
(Chan et al.'s formula for mean and M2); finished into sizes, shares, means, standard
deviations, approximate quantiles and standardized differences.

numpy and numba only. Blocks hold standardised features ``(x - offset) / scale``; the partial
inverts that map in float64, value by value (no temporary the size of the block).

Quantiles come from a histogram of ``bins`` equal bins per feature over a range known before
the pass (the smallest and largest value of the data, from the preparation pass). The order
statistic of a rank lies in the bin its cumulative count points to; the estimate lies in the
same bin (interpolated by rank inside it, clamped to the segment's smallest and largest value),
so every estimate is within one bin width, ``(hi - lo) / bins``, of numpy's exact (linear
interpolation) quantile of the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .moments import merge_moments

__all__ = [
    "QUANTILES",
    "Binning",
    "ProfilePartial",
    "ProfileStats",
    "choose_bins",
    "finalize_profile",
    "merge_profiles",
    "profile_partial",
]

#: quantiles reported by default (5 %, quartiles, 95 %)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def choose_bins(n_segments: int, n_features: int, budget: int = 1 << 22) -> int:
    """Bins per feature so that a partial's histograms (int64) take about ``budget`` bytes,
    between 32 and 256 (256 bins: quantiles within 0.4 % of each feature's range)."""
    fit = budget // max(1, 8 * n_segments * n_features)
    return int(min(256, max(32, fit)))


@dataclass(frozen=True)
class Binning:
    """How block values map to original units and to histogram bins.

    Parameters
    ----------
    scale, offset : ndarray of shape (d,), float64
        The block holds ``(x - offset) / scale``; ``x = value * scale + offset``. Pass the
        values as the blocks were scaled with (cast to the blocks' dtype first, as
        :class:`~kmeans_dask.engine.source.Affine` applies them), for the closest inverse.
    lo, hi : ndarray of shape (d,), float64
        Range of the histogram in original units (values outside go to the end bins).
    bins : int
        Bins per feature. A partial holds ``K x d x bins`` counts.
    """

    scale: np.ndarray
    offset: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    bins: int

    @property
    def width(self) -> np.ndarray:
        """Bin width per feature (original units): the quantiles' error bound."""
        return (self.hi - self.lo) / self.bins

    @classmethod
    def identity(cls, lo: np.ndarray, hi: np.ndarray, bins: int) -> Binning:
        """Blocks in original units (no scaling)."""
        d = len(lo)
        return cls(np.ones(d), np.zeros(d), np.asarray(lo, float), np.asarray(hi, float), bins)


@dataclass(frozen=True)
class ProfilePartial:
    """Per-segment statistics of some rows (one block, or merged blocks).

    ``count`` (K,) int64; ``mean``, ``m2``, ``vmin``, ``vmax`` (K, d) float64 (``m2``: sum of
    squared deviations from the mean; ``vmin``/``vmax``: +inf/-inf for an empty segment);
    ``hist`` (K, d, bins) int64.
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    hist: np.ndarray

    @property
    def n_segments(self) -> int:
        """K."""
        return len(self.count)


@njit(nogil=True, cache=True)
def _partial_kernel(X, labels, scale, offset, lo, inv_width, count, total, m2, vmin, vmax, hist):
    n, d = X.shape
    nb = hist.shape[2]
    for i in range(n):  # pass 1: counts, sums, extremes, histogram
        k = labels[i]
        count[k] += 1
        for t in range(d):
            v = np.float64(X[i, t]) * scale[t] + offset[t]
            total[k, t] += v
            if v < vmin[k, t]:
                vmin[k, t] = v
            if v > vmax[k, t]:
                vmax[k, t] = v
            f = (v - lo[t]) * inv_width[t]
            b = 0
            if f >= nb:
                b = nb - 1
            elif f > 0:
                b = int(f)
            hist[k, t, b] += 1
    mean = np.zeros_like(total)
    for k in range(count.shape[0]):
        if count[k] > 0:
            for t in range(d):
                mean[k, t] = total[k, t] / count[k]
    for i in range(n):  # pass 2: squared deviations from the block's exact segment means
        k = labels[i]
        for t in range(d):
            e = np.float64(X[i, t]) * scale[t] + offset[t] - mean[k, t]
            m2[k, t] += e * e
    return mean


def profile_partial(
    X: np.ndarray, labels: np.ndarray, n_segments: int, binning: Binning
) -> ProfilePartial:
    """Per-segment statistics of a block, in original units.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
        The block (standardised features), C-contiguous.
    labels : ndarray of shape (n,), int
        Segment of each row, in ``[0, n_segments)`` (inputs already validated).
    n_segments : int
    binning : Binning

    Returns
    -------
    ProfilePartial
    """
    d = X.shape[1]
    K, nb = int(n_segments), int(binning.bins)
    count = np.zeros(K, dtype=np.int64)
    total = np.zeros((K, d))
    m2 = np.zeros((K, d))
    vmin = np.full((K, d), np.inf)
    vmax = np.full((K, d), -np.inf)
    hist = np.zeros((K, d, nb), dtype=np.int64)
    width = binning.width
    inv_width = np.divide(1.0, width, out=np.zeros(d), where=width > 0)
    if X.shape[0] == 0:
        return ProfilePartial(count, np.zeros((K, d)), m2, vmin, vmax, hist)
    mean = _partial_kernel(
        np.ascontiguousarray(X),
        np.ascontiguousarray(labels, dtype=np.int64),
        np.ascontiguousarray(binning.scale, dtype=np.float64),
        np.ascontiguousarray(binning.offset, dtype=np.float64),
        np.ascontiguousarray(binning.lo, dtype=np.float64),
        inv_width,
        count,
        total,
        m2,
        vmin,
        vmax,
        hist,
    )
    return ProfilePartial(count, mean, m2, vmin, vmax, hist)


def merge_profiles(a: ProfilePartial, b: ProfilePartial) -> ProfilePartial:
    """Merge two partials of the same segments: counts and histograms add, extremes take the
    smaller/larger, mean and M2 by Chan et al.'s parallel formula (per segment and feature).
    Merging block partials equals the partial of all their rows (up to rounding)."""
    na = a.count[:, None].astype(np.float64)
    nb = b.count[:, None].astype(np.float64)
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = b.mean - a.mean
        frac = np.where(n > 0, nb / n, 0.0)
        mean = a.mean + delta * frac
        m2 = a.m2 + b.m2 + delta * delta * np.where(n > 0, na * nb / n, 0.0)
    # an empty side contributes nothing (its mean is a placeholder 0)
    mean = np.where(na == 0, b.mean, np.where(nb == 0, a.mean, mean))
    m2 = np.where(na == 0, b.m2, np.where(nb == 0, a.m2, m2))
    return ProfilePartial(
        a.count + b.count,
        mean,
        m2,
        np.minimum(a.vmin, b.vmin),
        np.maximum(a.vmax, b.vmax),
        a.hist + b.hist,
    )


@dataclass(frozen=True)
class ProfileStats:
    """Finished profiles, rows ordered by segment ID.

    Attributes
    ----------
    ids : ndarray of shape (K,)
        Segment ID of each row (sorted).
    size : ndarray of shape (K,), int64
    share : ndarray of shape (K,)
        ``size / size.sum()``.
    mean, std, vmin, vmax : ndarray of shape (K, d)
        In original units; ``std`` with ``ddof=1`` (pandas' default; NaN for one row), NaN
        for an empty segment.
    quantiles : ndarray of shape (K, d, len(q))
        Approximate quantiles, each within ``width`` of numpy's exact one.
    q : tuple of float
    width : ndarray of shape (d,)
        Histogram bin width per feature: the quantiles' error bound.
    overall_mean, overall_std : ndarray of shape (d,)
        Over all rows (``ddof=1``).
    z : ndarray of shape (K, d)
        ``(mean - overall_mean) / overall_std`` (0 where ``overall_std`` is 0).
    """

    ids: np.ndarray
    size: np.ndarray
    share: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    quantiles: np.ndarray
    q: tuple[float, ...]
    width: np.ndarray
    overall_mean: np.ndarray
    overall_std: np.ndarray
    z: np.ndarray


def _std(count: np.ndarray, m2: np.ndarray) -> np.ndarray:
    dof = (count - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dof[..., None] > 0, np.sqrt(np.maximum(m2, 0.0) / dof[..., None]), np.nan)


def _rank_values(p: ProfilePartial, binning: Binning, rank: np.ndarray) -> np.ndarray:
    """A value inside the bin holding the order statistic ``rank`` (K,) of every segment and
    feature: interpolated by rank within the bin, clamped to the segment's extremes."""
    cum = np.cumsum(p.hist, axis=2)  # (K, d, B)
    r = rank[:, None, None].astype(np.float64)
    b = np.minimum((cum <= r).sum(axis=2), p.hist.shape[2] - 1)  # (K, d)
    before = (
        np.take_along_axis(cum, b[..., None], axis=2)[..., 0]
        - np.take_along_axis(p.hist, b[..., None], axis=2)[..., 0]
    )
    inbin = np.take_along_axis(p.hist, b[..., None], axis=2)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(inbin > 0, (r[..., 0] - before + 0.5) / inbin, 0.5)
    value = binning.lo[None, :] + binning.width[None, :] * (b + np.clip(frac, 0.0, 1.0))
    has = (p.count > 0)[:, None]
    lo = np.where(has, p.vmin, binning.lo[None, :])  # an empty segment: any finite value
    hi = np.where(has, p.vmax, binning.lo[None, :])
    return np.clip(value, lo, hi)


def _quantiles(p: ProfilePartial, binning: Binning, q: tuple[float, ...]) -> np.ndarray:
    K, d = p.mean.shape
    out = np.full((K, d, len(q)), np.nan)
    has = p.count > 0
    for j, qq in enumerate(q):
        h = np.maximum(p.count - 1, 0) * qq  # numpy's 'linear' position
        r0, r1 = np.floor(h), np.ceil(h)
        v0, v1 = _rank_values(p, binning, r0), _rank_values(p, binning, r1)
        f = (h - r0)[:, None]
        out[:, :, j] = np.where(has[:, None], v0 + (v1 - v0) * f, np.nan)
    return out


def finalize_profile(
    p: ProfilePartial,
    binning: Binning,
    ids: np.ndarray | None = None,
    q: tuple[float, ...] = QUANTILES,
) -> ProfileStats:
    """Sizes, shares, means, standard deviations, quantiles and z of every segment.

    Parameters
    ----------
    p : ProfilePartial
        All rows, merged.
    binning : Binning
        The binning the partials were made with.
    ids : ndarray of shape (K,), optional
        ``ids[raw_index]`` is the segment ID of raw cluster ``raw_index`` (default
        ``arange(K)``); rows come out sorted by ID.
    q : tuple of float
        Quantiles in [0, 1].

    Returns
    -------
    ProfileStats
    """
    K = p.n_segments
    ids = np.arange(K) if ids is None else np.asarray(ids)
    total = p.count.sum()
    # overall moments: Chan's merge over the segments
    acc = (0, np.zeros(p.mean.shape[1]), np.zeros(p.mean.shape[1]))
    for k in range(K):
        acc = merge_moments(acc, (int(p.count[k]), p.mean[k], p.m2[k]))
    overall_mean = acc[1]
    overall_std = _std(np.array([acc[0]]), acc[2][None, :])[0]
    empty = (p.count == 0)[:, None]
    mean = np.where(empty, np.nan, p.mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(overall_std > 0, (mean - overall_mean) / overall_std, 0.0)
    z = np.where(empty, np.nan, z)
    order = np.argsort(ids, kind="stable")
    share = p.count / total if total > 0 else np.zeros(K)
    return ProfileStats(
        ids=ids[order],
        size=p.count[order],
        share=share[order],
        mean=mean[order],
        std=_std(p.count, p.m2)[order],
        vmin=np.where(empty, np.nan, p.vmin)[order],
        vmax=np.where(empty, np.nan, p.vmax)[order],
        quantiles=_quantiles(p, binning, q)[order],
        q=tuple(q),
        width=binning.width,
        overall_mean=overall_mean,
        overall_std=overall_std,
        z=z[order],
    )
