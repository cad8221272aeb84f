"""Partitioned readers: Parquet and CSV, local or ``s3://``, Hive-style partition folders.

:func:`read_dataset` lists the files once, reads only the Parquet footers (or the first rows
of each CSV) to validate names and types, prunes files by the partition filters, and returns
a lazy dask DataFrame with one partition per file (or per group of row groups in large
Parquet files). Every error names the URI or file and the column. Nothing is computed until
the caller asks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import DatasetError
from .dataset import Dataset, DatasetInfo
from .fs import to_uri
from .listing import fingerprint, fingerprints, list_files
from .parts import Part, read_frame_part, read_meta, read_table_part
from .schema import (
    ColumnPlan,
    check_schemas,
    normalise_filters,
    partition_values,
    read_schemas,
    select_columns,
    test_term,
)

__all__ = [
    "FORMATS",
    "Dataset",
    "DatasetInfo",
    "check_dataset",
    "fingerprint",
    "list_files",
    "open_dataset",
    "read_dataset",
    "read_table",
]

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")
#: Parquet files above this size are split into partitions of whole row groups
_SPLIT_BYTES = 256 * 2**20


# --------------------------------------------------------------------------- reading


def read_dataset(
    uri: str,
    format: str = "parquet",
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    filters: Any = None,
):
    """A lazy dask DataFrame over a partitioned Parquet or CSV dataset.

    See :func:`open_dataset` for the parameters; this returns only its ``frame``.
    """
    return open_dataset(uri, format, columns, id_column, storage_options, filters).frame


def read_table(
    uri: str, columns: Sequence[str] | None = None, storage_options: Mapping | None = None
) -> pd.DataFrame:
    """A small Parquet file, or every Parquet file under a folder (in path order), read into
    one pandas frame, eagerly and without Dask. Hive folder names do not become columns."""
    fs, _, files = list_files(uri, "parquet", storage_options)
    cols = list(columns) if columns is not None else None
    frames = [read_table_part(fs, Part(path, {}), cols).to_pandas() for path, _ in files]
    return pd.concat(frames, ignore_index=True)


def open_dataset(
    uri: str,
    format: str = "parquet",
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    filters: Any = None,
) -> Dataset:
    """A lazy dask DataFrame over a partitioned Parquet or CSV dataset.

    Parameters
    ----------
    uri : str
        A local path or ``s3://bucket/prefix`` (a folder, searched recursively, or one file).
        Files and folders whose name starts with ``_`` or ``.`` are ignored.
    format : {'parquet', 'csv'}
    columns : sequence of str, optional
        Feature columns (numeric). Default: every numeric column except the id column.
    id_column : str, optional
        Row identifier, kept as the first column (any type).
    storage_options : mapping, optional
        fsspec/s3fs options (``endpoint_url``, ``anon``, ...). Credentials default to the
        environment/profile and never appear in messages.
    filters : list, optional
        pyarrow-style DNF: ``[("year", ">=", 2025), ("region", "in", ["eu", "us"])]`` or a
        list of such lists (OR). Terms on Hive partition columns prune whole files; terms on
        other columns filter rows as they are read.

    Returns
    -------
    Dataset
        ``frame``: a dask DataFrame with columns ``[id_column] + features`` (+ the partition
        columns when ``columns`` is not given); when no row filter applies, its index is the
        global row number and its divisions are known. ``info``: a :class:`DatasetInfo`.

    Raises
    ------
    DatasetError
        No files, an unreadable file, a missing or non-numeric column, schemas that differ.
    """
    v = _validate(uri, format, columns, id_column, storage_options, filters)
    return _lazy_dataset(uri, v, format)


def check_dataset(
    uri: str,
    format: str = "parquet",
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    filters: Any = None,
) -> DatasetInfo:
    """Validate a dataset as :func:`open_dataset` does, without Dask and without reading any
    data: one listing, the partition folders and filters, the footers (Parquet) or first rows
    (CSV) of every selected file, read concurrently, and the columns.

    Cheap (metadata only), so a job calls it before it starts a cluster: a typo in a column
    name, a corrupt footer or a missing bucket fails in a second. The parameters are those
    of :func:`open_dataset`.

    Returns
    -------
    DatasetInfo
        With ``n_rows`` (from the footers; None for CSV or row filters) and ``fingerprints``
        (every listed file, as :func:`fingerprint` returns them, from the same listing).

    Raises
    ------
    DatasetError
        As :func:`open_dataset`.
    StorageError
        The store refused or failed a listing or a read (naming the operation and bucket).
    """
    v = _validate(uri, format, columns, id_column, storage_options, filters)
    return _info(uri, v, format)


@dataclass
class _Validated:
    """What validation found: the files, the partitions to read and the column plan."""

    fs: Any
    files: list[tuple[str, Any]]
    paths: list[str]
    parts: list[Part]
    plan: ColumnPlan
    row_filters: list
    sizes: dict[str, int] | None = None  # stored bytes per path
    groups: dict[str, list[int]] | None = None  # Parquet: rows of every row group per path

    @property
    def known(self) -> bool:
        """Every partition's length is known (from the footers, no row filter)."""
        return not self.row_filters and all(p.n_rows is not None for p in self.parts)


def _validate(uri, format, columns, id_column, storage_options, filters) -> _Validated:
    if format not in FORMATS:
        raise DatasetError(f"input format must be one of {', '.join(FORMATS)}; got {format!r}")
    fs, root, files = list_files(uri, format, storage_options)
    dnf = normalise_filters(filters)
    partition_types, values = partition_values(fs, root, files)
    selected, row_filters = _prune(uri, files, values, partition_types, dnf, filters)
    paths = [p for (p, _), _ in selected]
    schemas, metas = read_schemas(fs, format, paths)
    schema = check_schemas(fs, paths, schemas)
    plan = select_columns(uri, schema, partition_types, columns, id_column, row_filters)
    parts = _partitions(selected, metas)
    sizes = {p: int(info.get("size") or 0) for (p, info), _ in selected}
    groups = None if metas is None else {p: m[1] for p, m in zip(paths, metas, strict=True)}
    return _Validated(fs, files, paths, parts, plan, row_filters, sizes, groups)


def _info(uri: str, v: _Validated, fmt: str) -> DatasetInfo:
    return DatasetInfo(
        uri=uri,
        format=fmt,
        files=[to_uri(v.fs, p) for p in v.paths],
        features=v.plan.features,
        id_column=v.plan.id_column,
        partition_columns=list(v.plan.partition_columns),
        n_rows=sum(p.n_rows for p in v.parts) if v.known else None,
        dtypes=v.plan.dtypes,
        fingerprints=fingerprints(v.fs, v.files),
    )


def _prune(
    uri: str,
    files: list[tuple[str, Any]],
    values: list[dict[str, Any]],
    partition_types: dict[str, str],
    dnf: list[list[tuple[str, str, Any]]],
    filters: Any,
) -> tuple[list, list]:
    """Keep the files whose partition values pass the filter terms on partition columns;
    ``(selected (file, values) pairs, row filters on the other columns)``."""

    def keep(tv: dict[str, Any]) -> bool:
        if not dnf:
            return True
        return any(
            all(test_term(tv[c], op, v) for c, op, v in conj if c in partition_types)
            for conj in dnf
        )

    selected = [(f, tv) for f, tv in zip(files, values, strict=True) if keep(tv)]
    if not selected:
        raise DatasetError(f"filters {filters!r} select no partition of {uri}")
    row_filters = [[t for t in conj if t[0] not in partition_types] for conj in dnf]
    row_filters = [c for c in row_filters if c] if all(row_filters) else []
    return selected, row_filters


def _partitions(selected: list, metas: list[tuple] | None) -> list[Part]:
    """One partition per file, or per group of row groups for large Parquet files."""
    parts: list[Part] = []
    for i, ((path, info), tv) in enumerate(selected):
        if metas is None:
            parts.append(Part(path, tv, None, None))
            continue
        groups, n_rows = metas[i][1], metas[i][2]
        size = int(info.get("size") or 0)
        if size > _SPLIT_BYTES and len(groups) > 1:
            per = max(1, int(len(groups) * _SPLIT_BYTES / size))
            for g in range(0, len(groups), per):
                idx = list(range(g, min(g + per, len(groups))))
                parts.append(Part(path, tv, idx, sum(groups[j] for j in idx)))
        else:
            parts.append(Part(path, tv, None, n_rows))
    return parts


def _lazy_dataset(uri: str, v: _Validated, fmt: str) -> Dataset:
    """The dask DataFrame over the partitions: global row numbers as index when every
    partition's length is known (from the footers, no row filter)."""
    import dask.dataframe as dd

    fs, parts, plan, known = v.fs, v.parts, v.plan, v.known
    starts: list[int | None] = [None] * len(parts)
    divisions = None
    if known:
        offsets = np.cumsum([0] + [p.n_rows for p in parts]).tolist()
        starts = offsets[:-1]
        if offsets[-1] > 0 and all(p.n_rows > 0 for p in parts):
            divisions = (*offsets[:-1], offsets[-1] - 1)
    meta = read_meta(
        fs, fmt, parts[0], plan.file_columns, plan.partition_columns, plan.order, plan.features
    )
    ddf = dd.from_map(
        read_frame_part,
        parts,
        starts,
        fs=fs,
        fmt=fmt,
        file_columns=plan.file_columns,
        partition_columns=plan.partition_columns,
        row_filters=v.row_filters,
        order=plan.order,
        features=plan.features,
        meta=meta,
        divisions=divisions,
        label=f"read-{fmt}",
        enforce_metadata=False,
    )
    info = _info(uri, v, fmt)
    logger.info(
        "input %s: %d %s file(s), %d partition(s), features %s%s",
        uri,
        len(v.paths),
        fmt,
        len(parts),
        plan.features,
        f", {info.n_rows:,} rows" if info.n_rows is not None else "",
    )
    direct = fmt == "parquet" and known
    return Dataset(
        ddf,
        info,
        _fs=fs,
        _parts=parts if direct else None,
        _lengths=[p.n_rows for p in parts] if direct else None,
        _validated=v,
    )
