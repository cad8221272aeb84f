"""Counting how rows moved between two labellings, where the rows are.

Two runs label (partly) the same rows, each in its own partitioned table. The pairs
``(previous segment, current segment)`` are joined on the row id and counted on the workers
(a distributed merge and a group-by); only the counts, one per pair of segments, come back.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["transition_counts"]


def transition_counts(previous: Any, current: Any, on: str, column: str = "segment") -> pd.Series:
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
    pandas.Series
        Counts (int64) indexed by ``(previous, current)``; pairs that never occur are absent.
        Computed on the current Dask client: the rows never reach the caller.
    """
    left = previous[[on, column]].rename(columns={column: "previous"})
    right = current[[on, column]].rename(columns={column: "current"})
    pairs = left.merge(right, on=on, how="inner")
    counts = pairs.groupby(["previous", "current"]).size().compute()
    return counts.astype("int64")
