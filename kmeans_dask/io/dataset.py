"""A dataset opened for reading: a lazy frame, what validation learned, and the read units
(partitions) with their readers, for blocks that are read again on any worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np

from .parts import read_array_part
from .units import ColumnReader, ReadUnit, UnitReader, read_units

__all__ = ["Dataset", "DatasetInfo"]


@dataclass
class DatasetInfo:
    """What validation learned about a dataset."""

    uri: str
    format: str
    files: list[str]
    features: list[str]
    id_column: str | None
    partition_columns: list[str]
    n_rows: int | None
    dtypes: dict[str, str] = field(default_factory=dict)
    #: every listed file (path, size, ETag or mtime), as :func:`fingerprint` returns them
    fingerprints: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Dataset:
    """A lazy frame and what validation learned about it."""

    frame: Any  # dask.dataframe.DataFrame
    info: DatasetInfo
    # direct array path (Parquet features read straight into arrays, lengths from footers)
    _fs: Any = None
    _parts: list | None = None
    _lengths: list[int] | None = None
    _validated: Any = None

    def read_units(
        self, dtype: Any, max_unit_bytes: int | None = None
    ) -> tuple[UnitReader, list[ReadUnit]]:
        """The dataset as read units and a picklable reader of a run of units into a feature
        array of ``dtype``: what a block recipe needs to read its rows again on any worker.

        A unit is a partition (a file, or a group of row groups of a large Parquet file);
        with ``max_unit_bytes``, Parquet partitions larger than that are split into runs of
        whole row groups of about that size (so that blocks can be smaller than files).
        """
        v = self._validated
        feats = self.info.features
        direct = (
            self.info.format == "parquet"
            and v.known
            and not any(f in self.info.partition_columns for f in feats)
        )
        sizes = [v.sizes.get(p.path, 0) for p in v.parts]
        row_bytes = len(feats) * np.dtype(dtype).itemsize
        units = read_units(v.parts, sizes, v.known, v.groups, max_unit_bytes, row_bytes)
        frame_args = {
            "file_columns": v.plan.file_columns,
            "partition_columns": v.plan.partition_columns,
            "row_filters": v.row_filters,
            "order": v.plan.order,
            "features": feats,
        }
        fmt = self.info.format
        return UnitReader(v.fs, fmt, feats, dtype, direct, frame_args), units

    def column_reader(self, column: str) -> ColumnReader:
        """A reader of ``column`` (the id column, or another column of the files) for runs
        of the units of :meth:`read_units`, aligned row for row with the features."""
        v = self._validated
        direct = (
            self.info.format == "parquet" and v.known and column not in v.plan.partition_columns
        )
        frame_args = {
            "file_columns": sorted({*v.plan.file_columns, column} - set(v.plan.partition_columns)),
            "partition_columns": v.plan.partition_columns,
            "row_filters": v.row_filters,
            "order": [column],
            "features": [],
        }
        return ColumnReader(v.fs, self.info.format, column, direct, frame_args)

    def to_dask_array(self, dtype: Any = None) -> Any:
        """The feature columns as a 2-D dask array with known chunk sizes.

        For Parquet without row filters, each partition is read straight into an array
        (no DataFrame in between) and the chunk sizes come from the footers; otherwise the
        frame is converted, with one pass to learn the lengths.
        """
        import dask.array as da

        feats = self.info.features
        direct = (
            self._parts is not None
            and self._lengths is not None
            and not any(f in self.info.partition_columns for f in feats)
        )
        if direct:
            out_dtype = np.dtype(dtype or np.float64)
            task = dask.delayed(read_array_part, pure=True)
            arrays = [
                da.from_delayed(
                    # column order: the fastest fill; consumers take any order
                    task(part, fs=self._fs, columns=feats, dtype=out_dtype, order="F"),
                    shape=(n, len(feats)),
                    dtype=out_dtype,
                )
                for part, n in zip(self._parts, self._lengths, strict=True)
            ]
            return da.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        arr = self.frame[feats].to_dask_array(lengths=True)
        return arr if dtype is None else arr.astype(dtype)
