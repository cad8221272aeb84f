"""Segment profiles over a block set: the histogram range from the preparation pass's block
summaries (known before the assignment pass), and the merge of the per-block partials that
the assignment tasks return (:func:`~kmeans_dask.engine.outputs.assign_and_write`).

A partial holds ``K x d x bins`` histogram counts (up to a few MiB), so the partials are
merged on the workers in a tree of fan-in :data:`MERGE_FAN_IN`, in block order, and only the
merged one travels to the client (gathering thousands of block partials at once would not fit
the client)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import Any

import numpy as np

from ..kernels.profile import Binning, ProfilePartial, choose_bins, merge_profiles
from .blocks import BlockSet

__all__ = ["MERGE_FAN_IN", "binning_for", "merge_partials", "reduce_partials"]

#: partials merged per task of the reduction tree
MERGE_FAN_IN = 8


def binning_for(
    bs: BlockSet,
    mean: np.ndarray | None,
    scale: np.ndarray | None,
    n_segments: int,
    bins: int | None = None,
) -> Binning:
    """How to turn ``bs``'s (standardised) values into original units and histogram bins.

    Parameters
    ----------
    bs : BlockSet
        Blocks holding ``(x - mean) / scale`` in their dtype (or ``x`` when ``mean`` is None).
    mean, scale : ndarray of shape (d,) or None
        The standardisation the blocks were made with (None: the blocks are in original units).
    n_segments : int
        K (sizes the default number of bins).
    bins : int, optional
        Bins per feature; default :func:`~kmeans_dask.kernels.profile.choose_bins`.

    Returns
    -------
    Binning
        The inverse map in float64 of the parameters as the blocks applied them (cast to the
        blocks' dtype first), and the range of every feature from the block summaries.
    """
    s = bs.total_summary()
    d = bs.n_features
    bins = bins or choose_bins(n_segments, d)
    lo, hi = s.lo, s.hi
    if mean is None or scale is None:
        return Binning.identity(lo, hi, bins)
    mean = np.asarray(mean, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    applied_scale = scale.astype(bs.dtype).astype(np.float64)
    applied_mean = mean.astype(bs.dtype).astype(np.float64)
    # the summaries' range maps exactly (in float64) back to the input's range
    return Binning(applied_scale, applied_mean, lo * scale + mean, hi * scale + mean, bins)


def merge_partials(partials: Sequence[ProfilePartial]) -> ProfilePartial:
    """The per-block partials merged in block order (deterministic: the same result
    whether the blocks were persisted or streamed)."""
    return reduce(merge_profiles, partials)


def _merge_group(items: list, index: int | None) -> ProfilePartial:
    """Merge a group of partials (``item[index]`` of each item when ``index`` is given)."""
    return merge_partials([it if index is None else it[index] for it in items])


def reduce_partials(bs: BlockSet, handles: list, index: int | None = None) -> ProfilePartial:
    """Merge per-block results holding partials (``handles`` from
    :meth:`~kmeans_dask.engine.blocks.BlockSet.map_keep`; ``result[index]`` is the partial
    when ``index`` is given) on the workers, in a tree, in block order; returns the merged
    partial (the intermediate results are released)."""
    level: list[Any] = list(handles)
    while True:
        groups = [level[i : i + MERGE_FAN_IN] for i in range(0, len(level), MERGE_FAN_IN)]
        merged = bs.map_values(_merge_group, groups, [index] * len(groups))
        if index is None:
            bs.release(level)  # the previous level's merges (never the caller's handles)
        level, index = merged, None
        if len(level) == 1:
            return bs.gather(level)[0]
