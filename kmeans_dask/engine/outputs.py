"""Per-block output tasks (run on the workers): assign a block's rows and write them, one file
per input partition, and profile the segments in the same pass; read a column of a block's
partitions. The writer and readers are passed in by the job (this layer does no I/O of its
own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DatasetError
from ..kernels.assignment import assign_rows
from ..kernels.profile import Binning, ProfilePartial, profile_partial
from ..validation import check_finite, check_magnitude
from .block import Block

__all__ = ["assign_and_write", "checked_apply", "read_column"]


def assign_and_write(
    block: Block,
    units: tuple,
    offset: int,
    paths: list[str],
    rels: list[str],
    *,
    write: Callable,
    fs: Any,
    C: np.ndarray,
    ref: np.ndarray,
    ids: Any,
    id_name: str,
    binning: Binning | None = None,
    segment_ids: np.ndarray | None = None,
) -> tuple[list[Any], ProfilePartial | None]:
    """Assign a block's rows and write one file per read unit (input partition) it holds with
    ``write(frame, fs, path, rel) -> record`` (runs on a worker; ``ids(units)`` reads the
    id column of units, None numbers the rows globally). ``segment_ids[raw]`` is the segment
    ID written for raw cluster index ``raw`` (None: the raw index). Returns the records and,
    with a ``binning``, the block's segment profile partial (small: ``K x d x bins`` counts,
    by raw cluster index), made from the same labels while the block is in memory."""
    seg, d2 = assign_rows(block.X, C, ref)
    profile = None if binning is None else profile_partial(block.X, seg, len(C), binning)
    # the per-row columns are made in place where possible: this runs beside the blocks
    dist = np.sqrt(d2, out=d2)
    seg = (seg if segment_ids is None else np.asarray(segment_ids)[seg]).astype(
        np.int32, copy=False
    )
    records = []
    start = 0
    for unit, rows, path, rel in zip(units, block.unit_rows, paths, rels, strict=True):
        stop = start + rows
        if ids is None:
            ident = np.arange(offset + start, offset + stop)
        else:
            ident = ids([unit])
            if len(ident) != rows:  # both readers must agree row for row
                raise DatasetError(f"{rel}: read {len(ident)} ids for {rows} rows of features")
        frame = pd.DataFrame(
            {id_name: ident, "segment": seg[start:stop], "distance_to_centroid": dist[start:stop]},
            copy=False,
        )
        records.append(write(frame, fs, path, rel))
        start = stop
    return records, profile


def read_column(units: tuple, reader: Any, dtype: Any = None) -> np.ndarray:
    """``reader(units)`` (a column of a block's units), cast to ``dtype`` when given."""
    values = reader(units)
    return values if dtype is None else np.asarray(values, dtype=dtype)


def checked_apply(
    X: np.ndarray,
    func: Callable,
    C: np.ndarray,
    ref: np.ndarray,
    owner: str,
    block_info: dict | None = None,
) -> np.ndarray:
    """``func(X, C, ref)`` on a block of rows, after checking its values for NaN/inf and
    for squared distances that would overflow (lazy input is checked block by block, where
    the values are; rows counted globally)."""
    row0 = block_info[0]["array-location"][0][0] if block_info else 0
    check_finite(X, owner, row0=row0)
    check_magnitude(X, owner, dtype=C.dtype)
    return func(X, C, ref)
