"""Read units: the partitions a dataset is read by (files, row-group groups), and the reader
that turns a run of them into one feature array (runs on the workers).

The compute layers group consecutive units into blocks (from the data only) and hold, per
block, just the list of its units: a block can then be read again on every pass (streaming)
or once (persisted), with the same result. A unit is never split between blocks, so outputs
can still be written one file per input partition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .parts import Part, read_array_part, read_frame_part, read_table_part

__all__ = ["ColumnReader", "ReadUnit", "UnitReader", "read_units"]


@dataclass(frozen=True)
class ReadUnit:
    """A piece of a dataset: a file, or some row groups of a Parquet file."""

    path: str
    partition_values: tuple  # ((column, value), ...) of Hive folders
    row_groups: tuple[int, ...] | None
    n_rows: int | None  # None: unknown until read (CSV, row filters)
    nbytes: int  # stored bytes (about)

    def part(self) -> Part:
        """The reader's :class:`Part` of this unit."""
        rgs = None if self.row_groups is None else list(self.row_groups)
        return Part(self.path, dict(self.partition_values), rgs, self.n_rows)


def read_units(
    parts: Sequence[Part],
    sizes: Sequence[int],
    known: bool,
    groups: dict[str, list[int]] | None = None,
    max_unit_bytes: int | None = None,
    row_bytes: int = 0,
) -> list[ReadUnit]:
    """The read units of partitions ``parts``: one per partition, except that a Parquet
    partition of more than ``max_unit_bytes`` stored bytes with several row groups is split
    into runs of whole row groups of about that size. ``sizes`` are the stored bytes of each
    partition's file, ``known`` whether row counts are exact (footers, no row filter),
    ``groups`` the rows of every row group per path, and ``row_bytes`` the bytes of a row
    once read (sizes known rows by what they take in memory, not on storage)."""
    per_file = Counter(p.path for p in parts)
    units = []
    for part, size in zip(parts, sizes, strict=True):
        tv = tuple(sorted(part.partition_values.items()))
        nbytes = max(1, int(size / per_file[part.path]))
        rows = None if groups is None else groups.get(part.path)
        idx = list(part.row_groups) if part.row_groups is not None else None
        if rows is not None and idx is None:
            idx = list(range(len(rows)))
        held = nbytes
        if rows is not None and row_bytes:
            held = row_bytes * sum(rows[g] for g in idx)
        if max_unit_bytes and rows is not None and held > max_unit_bytes and len(idx) > 1:
            units.extend(_split(part.path, tv, idx, rows, held, max_unit_bytes, known))
            continue
        rgs = None if part.row_groups is None else tuple(part.row_groups)
        units.append(ReadUnit(part.path, tv, rgs, part.n_rows if known else None, nbytes))
    return units


def _split(path, tv, idx, rows, nbytes, max_bytes, known) -> list[ReadUnit]:
    """Runs of consecutive row groups of one partition, each about ``max_bytes``."""
    total = max(1, sum(rows[g] for g in idx))
    out, run, run_bytes = [], [], 0.0
    for g in idx:
        run.append(g)
        run_bytes += nbytes * rows[g] / total
        if run_bytes >= max_bytes:
            n = sum(rows[j] for j in run)
            out.append(ReadUnit(path, tv, tuple(run), n if known else None, int(run_bytes)))
            run, run_bytes = [], 0.0
    if run:
        n = sum(rows[j] for j in run)
        out.append(ReadUnit(path, tv, tuple(run), n if known else None, max(1, int(run_bytes))))
    return out


class UnitReader:
    """Reads a run of units into one C-ordered feature array of ``dtype`` (picklable).

    ``direct``: Parquet features read straight from Arrow columns (no DataFrame); otherwise
    the partition is read as a frame (CSV, row filters, partition-column features) and its
    feature columns converted. Errors name the file and the column.
    """

    def __init__(
        self, fs: Any, fmt: str, features: list[str], dtype: Any, direct: bool, frame_args: dict
    ) -> None:
        self.fs = fs
        self.fmt = fmt
        self.features = list(features)
        self.dtype = np.dtype(dtype)
        self.direct = direct
        self.frame_args = dict(frame_args)

    def _read(
        self, part: Part, out: np.ndarray | None = None, transform: Callable | None = None
    ) -> np.ndarray:
        if self.direct:
            return read_array_part(
                part,
                fs=self.fs,
                columns=self.features,
                dtype=self.dtype,
                out=out,
                transform=transform,
            )
        df = read_frame_part(part, None, fs=self.fs, fmt=self.fmt, **self.frame_args)
        return df[self.features].to_numpy(dtype=self.dtype)

    def __call__(
        self, units: Sequence[ReadUnit], transform: Callable[[np.ndarray], Any] | None = None
    ) -> tuple[np.ndarray, list[int]]:
        """The features of ``units`` in row order, and the rows of each unit.

        ``transform`` (element-wise, in place; e.g. standardising) is applied to the rows:
        on Parquet read straight into the array, strip by strip as they are filled (no
        second pass over the block); otherwise to the whole array at the end.
        """
        d = len(self.features)
        if self.direct and all(u.n_rows is not None for u in units):
            # rows known from the footers: every unit fills its rows of one array
            counts = [int(u.n_rows) for u in units]
            out = np.empty((sum(counts), d), dtype=self.dtype)
            row = 0
            for u, rows in zip(units, counts, strict=True):
                self._read(u.part(), out[row : row + rows], transform)
                row += rows
            return out, counts
        pieces = [self._read(u.part()) for u in units]
        counts = [p.shape[0] for p in pieces]
        if len(pieces) == 1:
            out = np.ascontiguousarray(pieces.pop())
        else:
            out = np.empty((sum(counts), d), dtype=self.dtype)
            row = 0
            while pieces:  # copy into row order piece by piece, freeing each as it is copied
                p = pieces.pop(0)
                out[row : row + p.shape[0]] = p
                row += p.shape[0]
        if transform is not None:
            transform(out)
        return out, counts


class ColumnReader:
    """Reads one column (an id of any type, or a numeric target) for a run of units, row for
    row aligned with :class:`UnitReader` on the same units (picklable)."""

    def __init__(self, fs: Any, fmt: str, column: str, direct: bool, frame_args: dict) -> None:
        self.fs = fs
        self.fmt = fmt
        self.column = column
        self.direct = direct
        self.frame_args = dict(frame_args)

    def _read(self, part: Part) -> np.ndarray:
        if self.direct:
            table = read_table_part(self.fs, part, [self.column])
            return table.column(self.column).to_numpy(zero_copy_only=False)
        df = read_frame_part(part, None, fs=self.fs, fmt=self.fmt, **self.frame_args)
        return df[self.column].to_numpy()

    def __call__(self, units: Sequence[ReadUnit]) -> np.ndarray:
        pieces = [self._read(u.part()) for u in units]
        return np.concatenate(pieces) if len(pieces) != 1 else pieces[0]
