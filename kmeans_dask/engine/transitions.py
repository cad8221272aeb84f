"""Counting how rows moved between two labellings, where the rows are.

Two runs label (partly) the same rows, each in its own partitioned table. The pairs
``(previous segment, current segment)`` are joined on the row id and counted on the workers
(a distributed merge and a group-by); only the counts, one per pair of segments, come back.
"""

from __future__ import annotations

from typing import Any

import dask
import pandas as pd

__all__ = ["transition_counts"]


def transition_counts(
    previous: Any, current: Any, on: str, column: str = "segment"
) -> tuple[pd.Series, int]:
    """Rows per ``(previous, current)`` pair of labels, over the ids both tables hold.

    Parameters
    ----------
    previous, current : dask.dataframe.DataFrame
        Each with the id column ``on`` and the label column ``column`` (ids unique within a
        table; inputs already validated).
    on : str
        The id column the rows are joined on.
    column : str
        The label column.

    Returns
    -------
    counts : pandas.Series
        Counts (int64) indexed by ``(previous, current)``; pairs that never occur are absent.
    n_ids : int
        Distinct ids joined: fewer than ``counts.sum()`` when an id is on several rows of
        either table (then the counts are pairs, not rows).

    Computed on the current Dask client in one graph: the rows never reach the caller.
    """
    left = previous[[on, column]].rename(columns={column: "previous"})
    right = current[[on, column]].rename(columns={column: "current"})
    pairs = left.merge(right, on=on, how="inner")
    counts, n_ids = dask.compute(
        pairs.groupby(["previous", "current"]).size(), pairs[on].nunique()
    )
    return counts.astype("int64"), int(n_ids)
