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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np

from ..exceptions import DatasetError
from .fs import filesystem, to_uri
from .parts import Part, read_array_part, read_frame_part, read_meta
from .schema import (
    csv_head,
    hive_values,
    is_numeric_type,
    normalise_filters,
    parquet_meta,
    test_term,
    typed_values,
)

__all__ = [
    "FORMATS",
    "Dataset",
    "DatasetInfo",
    "fingerprint",
    "list_files",
    "open_dataset",
    "read_dataset",
]

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")
_EXTENSIONS = {
    "parquet": (".parquet", ".parq", ".pq"),
    "csv": (".csv", ".csv.gz", ".csv.bz2", ".csv.zst"),
}
#: Parquet files above this size are split into partitions of whole row groups
_SPLIT_BYTES = 256 * 2**20


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


# --------------------------------------------------------------------------- listing


def _is_data_file(rel: str, fmt: str) -> bool:
    segments = rel.split("/")
    if any(s.startswith(("_", ".")) for s in segments):  # _SUCCESS, _metadata, .hidden
        return False
    return rel.lower().endswith(_EXTENSIONS[fmt])


def list_files(uri: str, format: str = "parquet", storage_options: Mapping | None = None):
    """Data files under ``uri`` with their listing info (sorted by path).

    Returns
    -------
    fs, root, files : filesystem, root path, list of (path, info dict)
    """
    fs, root = filesystem(uri, storage_options)
    try:
        fs.invalidate_cache(root)
        if fs.isfile(root):
            return fs, root.rsplit("/", 1)[0], [(root, fs.info(root))]
        listing = fs.find(root, detail=True) if fs.exists(root) else {}
    except (PermissionError, OSError) as exc:
        raise DatasetError(f"cannot list input {uri}: {type(exc).__name__}: {exc}") from exc
    files = []
    for path, info in sorted(listing.items()):
        rel = path[len(root) :].lstrip("/")
        if info.get("type", "file") == "file" and _is_data_file(rel, format):
            files.append((path, info))
    if not files:
        exts = ", ".join(_EXTENSIONS[format])
        raise DatasetError(
            f"no {format} files ({exts}) found at {uri}; check the input uri and format"
        )
    return fs, root, files


def fingerprint(
    uri: str, format: str = "parquet", storage_options: Mapping | None = None
) -> list[dict[str, Any]]:
    """Identity of every input file from one listing (no data read): path, size, and the
    ETag (object stores) or modification time (local files)."""
    fs, _, files = list_files(uri, format, storage_options)
    out = []
    for path, info in files:
        rec: dict[str, Any] = {"path": to_uri(fs, path), "size": int(info.get("size") or 0)}
        etag = info.get("ETag") or info.get("etag")
        if etag:
            rec["etag"] = str(etag).strip('"')
        else:
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
            rec["mtime"] = str(mtime)
        out.append(rec)
    return out


# --------------------------------------------------------------------------- reading


@dataclass
class Dataset:
    """A lazy frame and what validation learned about it."""

    frame: Any  # dask.dataframe.DataFrame
    info: DatasetInfo
    # direct array path (Parquet features read straight into arrays, lengths from footers)
    _fs: Any = None
    _parts: list | None = None
    _lengths: list[int] | None = None

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
                    task(part, fs=self._fs, columns=feats, dtype=out_dtype),
                    shape=(n, len(feats)),
                    dtype=out_dtype,
                )
                for part, n in zip(self._parts, self._lengths, strict=True)
            ]
            return da.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        arr = self.frame[feats].to_dask_array(lengths=True)
        return arr if dtype is None else arr.astype(dtype)


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


def open_dataset(
    uri: str,
    format: str = "parquet",
    columns: Sequence[str] | None = None,
    id_column: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    filters: Any = None,
):
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
    import dask.dataframe as dd

    if format not in FORMATS:
        raise DatasetError(f"input format must be one of {', '.join(FORMATS)}; got {format!r}")
    fs, root, files = list_files(uri, format, storage_options)
    dnf = normalise_filters(filters)

    # partition folders
    rel_dirs = [
        p[len(root) :].lstrip("/").rsplit("/", 1)[0] if "/" in p[len(root) :].lstrip("/") else ""
        for p, _ in files
    ]
    raw_values = [hive_values(d) for d in rel_dirs]
    keys = list(raw_values[0])
    for (path, _), vals in zip(files, raw_values, strict=True):
        if list(vals) != keys:
            raise DatasetError(
                f"partition folders differ: {to_uri(fs, path)} has partition keys "
                f"{list(vals)} but {to_uri(fs, files[0][0])} has {keys}"
            )
    partition_types: dict[str, str] = {}
    part_values: list[dict[str, Any]] = [{} for _ in files]
    for key in keys:
        kind, vals = typed_values([v[key] for v in raw_values])
        partition_types[key] = kind
        for tv, v in zip(part_values, vals, strict=True):
            tv[key] = v

    # prune files by the filter terms that touch only partition columns
    def keep(values: dict[str, Any]) -> bool:
        if not dnf:
            return True
        return any(
            all(test_term(values[c], op, v) for c, op, v in conj if c in partition_types)
            for conj in dnf
        )

    selected = [(f, tv) for f, tv in zip(files, part_values, strict=True) if keep(tv)]
    if not selected:
        raise DatasetError(f"filters {filters!r} select no partition of {uri}")
    row_filters = [[t for t in conj if t[0] not in partition_types] for conj in dnf]
    row_filters = [c for c in row_filters if c] if all(row_filters) else []

    # schemas (footers / CSV heads), read concurrently: this is I/O
    paths = [p for (p, _), _ in selected]
    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        if format == "parquet":
            metas = list(pool.map(lambda p: parquet_meta(fs, p), paths))
            schemas = [m[0] for m in metas]
        else:
            schemas = list(pool.map(lambda p: csv_head(fs, p), paths))
            metas = None
    first = schemas[0]
    for path, schema in zip(paths, schemas, strict=True):
        if set(schema) != set(first):
            missing = sorted(set(first) - set(schema))
            extra = sorted(set(schema) - set(first))
            raise DatasetError(
                f"schema of {to_uri(fs, path)} differs from {to_uri(fs, paths[0])}: "
                f"missing columns {missing}, extra columns {extra}"
            )
        for col, t in schema.items():
            if is_numeric_type(t) != is_numeric_type(first[col]):
                raise DatasetError(
                    f"column {col!r} is {t} in {to_uri(fs, path)} but {first[col]} in "
                    f"{to_uri(fs, paths[0])}"
                )
    all_types = {**first, **partition_types}
    available = list(first) + [k for k in keys if k not in first]

    if id_column is not None and id_column not in all_types:
        raise DatasetError(
            f"id column {id_column!r} not found in {uri}; available columns: {available}"
        )
    if columns is None:
        features = [c for c in first if c != id_column and is_numeric_type(all_types[c])]
        extra_cols = [k for k in keys if k != id_column]
    else:
        features = list(columns)
        extra_cols = []
        missing = [c for c in features if c not in all_types]
        if missing:
            raise DatasetError(
                f"column(s) {missing} not found in {uri}; available columns: {available}"
            )
        for c in features:
            t = all_types[c]
            if not (is_numeric_type(t) or t == "int64" or t == "float64"):
                raise DatasetError(
                    f"feature column {c!r} in {uri} has type {t}, which is not numeric; "
                    "choose numeric columns or encode it first"
                )
    if not features:
        raise DatasetError(f"no numeric feature columns in {uri}; available: {available}")
    for col, _, _ in (t for conj in row_filters for t in conj):
        if col not in all_types:
            raise DatasetError(f"filter column {col!r} not found in {uri}")

    order = ([id_column] if id_column else []) + [c for c in features if c != id_column]
    order += [c for c in extra_cols if c not in order]
    needed = set(order) | {t[0] for conj in row_filters for t in conj}
    file_columns = [c for c in first if c in needed]
    part_cols = {k: partition_types[k] for k in keys if k in needed}

    # partitions: one per file, or per group of row groups for large Parquet files
    parts: list[Part] = []
    for i, ((path, info), tv) in enumerate(selected):
        if metas is not None:
            groups, n_rows = metas[i][1], metas[i][2]
            size = int(info.get("size") or 0)
            if size > _SPLIT_BYTES and len(groups) > 1:
                per = max(1, int(len(groups) * _SPLIT_BYTES / size))
                for g in range(0, len(groups), per):
                    idx = list(range(g, min(g + per, len(groups))))
                    parts.append(Part(path, tv, idx, sum(groups[j] for j in idx)))
                continue
            parts.append(Part(path, tv, None, n_rows))
        else:
            parts.append(Part(path, tv, None, None))

    known = not row_filters and all(p.n_rows is not None for p in parts)
    starts: list[int | None] = [None] * len(parts)
    divisions = None
    if known:
        offsets = np.cumsum([0] + [p.n_rows for p in parts]).tolist()
        starts = offsets[:-1]
        if offsets[-1] > 0 and all(p.n_rows > 0 for p in parts):
            divisions = (*offsets[:-1], offsets[-1] - 1)

    meta = read_meta(fs, format, parts[0], file_columns, part_cols, order, features)
    ddf = dd.from_map(
        read_frame_part,
        parts,
        starts,
        fs=fs,
        fmt=format,
        file_columns=file_columns,
        partition_columns=part_cols,
        row_filters=row_filters,
        order=order,
        features=features,
        meta=meta,
        divisions=divisions,
        label=f"read-{format}",
        enforce_metadata=False,
    )
    info = DatasetInfo(
        uri=uri,
        format=format,
        files=[to_uri(fs, p) for p in paths],
        features=features,
        id_column=id_column,
        partition_columns=list(part_cols),
        n_rows=sum(p.n_rows for p in parts) if known else None,
        dtypes={c: all_types[c] for c in order},
    )
    logger.info(
        "input %s: %d %s file(s), %d partition(s), features %s%s",
        uri,
        len(paths),
        format,
        len(parts),
        features,
        f", {info.n_rows:,} rows" if info.n_rows is not None else "",
    )
    return Dataset(
        ddf,
        info,
        _fs=fs,
        _parts=parts if format == "parquet" and known else None,
        _lengths=[p.n_rows for p in parts] if format == "parquet" and known else None,
    )
