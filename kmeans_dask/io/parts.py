"""Reading one partition of a dataset (runs on the workers): a Parquet file (or some of its
row groups) or a CSV file, as a pandas frame or straight into a feature array."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DatasetError
from .fs import to_uri
from .rowfill import fill_rows
from .schema import open_parquet, row_mask, unreadable

__all__ = [
    "Part",
    "check_finite",
    "iter_table_part",
    "read_array_part",
    "read_frame_part",
    "read_meta",
    "read_table_part",
]


@dataclass
class Part:
    """One partition: a file, or a group of row groups of a large Parquet file."""

    path: str
    partition_values: dict[str, Any]
    row_groups: list[int] | None = None
    n_rows: int | None = None


def read_table_part(fs: Any, part: Part, columns: list[str] | None) -> Any:
    """The Arrow table of a Parquet partition (errors name the file)."""
    try:
        with open_parquet(fs, part.path) as pf:
            if part.row_groups is not None:
                return pf.read_row_groups(part.row_groups, columns=columns)
            return pf.read(columns=columns)
    except Exception as exc:
        raise unreadable(fs, part.path, "Parquet", exc) from exc


#: most bytes of decoded Arrow columns read at once when filling a block: a row group is read
#: a few columns at a time, so the reader's memory beside the block stays this small
PIECE_BYTES = 8 * 2**20


def iter_table_part(
    fs: Any, part: Part, columns: list[str], piece_bytes: int = PIECE_BYTES
) -> Iterator[tuple[int, int, int, Any]]:
    """A Parquet partition's ``columns`` as Arrow tables of one row group and a few columns
    each (about ``piece_bytes`` decoded), in row-group then column order (errors name the
    file). Yields ``(total rows of the partition from the footer, first row of the piece
    within the partition, index in ``columns`` of its first column, table)``.

    A reader that copies the values elsewhere holds one piece's buffers at a time; after
    each row group, Arrow's allocator hands the freed pages back to the system (it keeps
    them otherwise, on top of the block they were copied into).
    """
    import pyarrow as pa

    try:
        with open_parquet(fs, part.path) as pf:
            meta = pf.metadata
            groups = range(meta.num_row_groups) if part.row_groups is None else part.row_groups
            total = sum(meta.row_group(g).num_rows for g in groups)
            row = 0
            for g in groups:
                n = meta.row_group(g).num_rows
                width = max(1, piece_bytes // max(1, 8 * n))  # 8 bytes: the widest number
                for j in range(0, len(columns), width):
                    yield total, row, j, pf.read_row_group(g, columns=columns[j : j + width])
                row += n
                pa.default_memory_pool().release_unused()
    except Exception as exc:
        raise unreadable(fs, part.path, "Parquet", exc) from exc


def check_finite(
    uri: str,
    columns: Sequence[str],
    arrays: Sequence[np.ndarray],
    nulls: Sequence[int] | None = None,
) -> None:
    """Raise a :class:`DatasetError` naming the file, each column and its counts of NaN,
    +inf and -inf values, e.g. ``column 'spend' of s3://b/k/part-3.parquet has 12 NaN
    value(s)``. ``nulls[j]`` is the number of nulls (read as NaN) of column ``j``: when there
    are any, the count says "NaN or null".

    Cheap: one sum per column (a finite sum means finite values); the exact counts are
    taken only for a column whose sum is not finite.
    """
    problems = []
    for j, (name, col) in enumerate(zip(columns, arrays, strict=True)):
        if not np.issubdtype(col.dtype, np.floating) or np.isfinite(col.sum()):
            continue
        null = int(nulls[j]) if nulls is not None else 0
        counts = [  # a null (pandas writes NaN as null) is read as NaN
            (int(np.isnan(col).sum()), "NaN or null" if null else "NaN"),
            (int(np.isposinf(col).sum()), "+inf"),
            (int(np.isneginf(col).sum()), "-inf"),
        ]
        found = ", ".join(f"{n} {label} value(s)" for n, label in counts if n > 0)
        if found:  # else the sum overflowed: the values are finite
            note = " (as float32, values beyond 3.4e38 become inf)"
            note = note if col.dtype == np.float32 else ""
            problems.append(f"column {name!r} of {uri} has {found}{note}")
    if problems:
        raise DatasetError(
            "; ".join(problems) + ": features must be finite numbers; drop or impute these "
            "values before clustering"
        )


def read_frame_part(
    part: Part,
    start: int | None,
    *,
    fs: Any,
    fmt: str,
    file_columns: list[str] | None,
    partition_columns: dict[str, str],
    row_filters: list,
    order: list[str],
    features: list[str],
) -> pd.DataFrame:
    """Read one partition (runs on a worker)."""
    uri = to_uri(fs, part.path)
    if fmt == "parquet":
        df = read_table_part(fs, part, file_columns).to_pandas(ignore_metadata=True)
    else:
        try:
            with fs.open(part.path, "rb", compression="infer") as f:
                df = pd.read_csv(f, usecols=file_columns)
        except Exception as exc:
            raise unreadable(fs, part.path, "CSV", exc) from exc
    for col, kind in partition_columns.items():
        value = part.partition_values[col]
        df[col] = pd.Series([value] * len(df), dtype="string" if kind == "string" else kind)
    for col in features:
        if not pd.api.types.is_numeric_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            example = df[col][bad].iloc[0] if bad.any() else None
            raise DatasetError(
                f"column {col!r} in {uri} has non-numeric values (e.g. {example!r}); "
                "features must be numeric"
            )
    if row_filters:
        mask = pd.Series(False, index=df.index)
        for conj in row_filters:
            mask |= row_mask(df, conj)
        df = df[mask]
    # only float (and nullable) columns can hold NaN or inf
    floats = [
        c
        for c in features
        if pd.api.types.is_float_dtype(df[c]) or pd.api.types.is_extension_array_dtype(df[c])
    ]
    arrays = [df[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in floats]
    check_finite(uri, floats, arrays)
    df = df[order]
    if start is not None:
        df.index = pd.RangeIndex(start, start + len(df))
    else:
        df = df.reset_index(drop=True)
    return df


def read_array_part(
    part: Part,
    *,
    fs: Any,
    columns: list[str],
    dtype: np.dtype,
    out: np.ndarray | None = None,
    transform: Callable[[np.ndarray], Any] | None = None,
    order: str = "C",
    piece_bytes: int = PIECE_BYTES,
) -> np.ndarray:
    """One Parquet partition's feature columns as an array of ``dtype``, C-ordered
    (row-major) and filled into ``out`` (rows x columns) when given (runs on a worker).

    Arrow holds columns; the compute kernels want rows. The columns are copied straight into
    the row-major array a tile of rows at a time (the tile stays in cache while every column
    writes its strip), one copy in all: no column-ordered intermediate and no transposing copy.
    A row group is read a few columns at a time (:data:`PIECE_BYTES`), so the Arrow memory
    beside the block is a few MiB, whatever the row groups' size. ``transform(strip)``
    (element-wise, in place, e.g. standardising) runs on each row group's rows once all their
    columns are in, a tile at a time, while the row group is still in cache.
    ``order="F"``: a column-ordered array instead, one sequential copy per column (half the
    time of the row-major fill, for consumers that take any order; no ``transform``).
    """
    if order == "F":
        table = read_table_part(fs, part, columns)
        return _read_columns(table, to_uri(fs, part.path), columns, dtype)
    uri = to_uri(fs, part.path)
    d = len(columns)
    nulls = np.zeros(d, dtype=np.int64)
    sums = np.zeros(d)
    for total, row, j0, table in iter_table_part(fs, part, columns, piece_bytes):
        if out is None:
            out = np.empty((total, d), dtype=dtype)
        elif out.shape != (total, d):
            raise DatasetError(f"{uri}: read {total} rows where its footer gave {out.shape[0]}")
        j1 = j0 + table.num_columns
        names = columns[j0:j1]
        nulls[j0:j1] += [table.column(c).null_count for c in names]
        stop = _fill(table, names, out[:, j0:j1], row, sums[j0:j1])
        del table
        if transform is not None and j1 == d:  # the row group's last piece: rows complete
            _transform(out, row, stop, transform)
    if out is None:  # no row group
        out = np.empty((0, d), dtype=dtype)
    bad = [j for j in range(d) if not np.isfinite(sums[j])]
    if bad:  # the exact counts, only for the columns that need them
        names = [columns[j] for j in bad]
        check_finite(uri, names, [out[:, j] for j in bad], [nulls[j] for j in bad])
    return out


def _tile_rows(out: np.ndarray) -> int:
    """Rows of ``out`` spanning about 256 KiB of its rows (a tile that stays in cache)."""
    return max(256, (256 * 1024) // max(1, out.strides[0]))


def _fill(table: Any, columns: list[str], out: np.ndarray, row: int, sums: np.ndarray) -> int:
    """Copy ``table``'s columns into the columns of ``out`` (a view of the block's) from
    ``row`` on, a tile of rows at a time, adding the column sums (finiteness) into ``sums``
    (a view); returns the next row."""
    tile = _tile_rows(out)
    for batch in table.to_batches():
        # zero-copy views of Arrow's buffers (nulls become NaN in a copy)
        arrays = [batch.column(c).to_numpy(zero_copy_only=False) for c in columns]
        m = batch.num_rows
        if fill_rows(arrays, out, row, sums):  # compiled: columns of one floating dtype
            row += m
            continue
        cast = any(a.dtype != out.dtype for a in arrays)
        for t0 in range(0, m, tile):
            t1 = min(m, t0 + tile)
            strip = out[row + t0 : row + t1]
            with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
                for j, a in enumerate(arrays):
                    strip[:, j] = a[t0:t1]
            if cast:  # finiteness after the cast (float64 beyond float32's range -> inf)
                sums += strip.sum(axis=0, dtype=np.float64)
        if not cast:
            sums += [a.sum() for a in arrays]
        row += m
    return row


def _transform(
    out: np.ndarray, start: int, stop: int, transform: Callable[[np.ndarray], Any]
) -> None:
    """``transform`` (element-wise, in place) on rows ``start:stop`` of ``out``, a tile at a
    time."""
    tile = _tile_rows(out)
    for t0 in range(start, stop, tile):
        transform(out[t0 : min(stop, t0 + tile)])


def _read_columns(table: Any, uri: str, columns: list[str], dtype: np.dtype) -> np.ndarray:
    """The feature columns of ``table`` as a Fortran-ordered array, checked for finiteness."""
    out = np.empty((table.num_rows, len(columns)), dtype=dtype, order="F")
    nulls = []
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by the check
        for j, name in enumerate(columns):
            col = table.column(name)
            nulls.append(col.null_count)
            out[:, j] = col.to_numpy(zero_copy_only=False)  # nulls become NaN
    check_finite(uri, columns, [out[:, j] for j in range(len(columns))], nulls)
    return out


def read_meta(fs, fmt, part, file_columns, part_cols, order, features) -> pd.DataFrame:
    """Empty frame with the output's columns and dtypes (from the file's schema)."""
    try:
        if fmt == "parquet":
            with open_parquet(fs, part.path) as pf:
                schema = pf.schema_arrow
            empty = schema.empty_table().select(file_columns).to_pandas(ignore_metadata=True)
        else:
            with fs.open(part.path, "rb", compression="infer") as f:
                empty = pd.read_csv(f, usecols=file_columns, nrows=1000).iloc[:0]
    except Exception as exc:
        raise unreadable(fs, part.path, "Parquet" if fmt == "parquet" else "CSV", exc) from exc
    for col, kind in part_cols.items():
        empty[col] = pd.Series([], dtype="string" if kind == "string" else kind)
    return empty[order].reset_index(drop=True)
