"""Dataset structure: Hive partition folders, filters, and per-file schemas (footers/heads)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from ..exceptions import DatasetError
from .fs import to_uri

__all__ = [
    "csv_head",
    "hive_values",
    "is_numeric_type",
    "normalise_filters",
    "open_parquet",
    "parquet_meta",
    "row_mask",
    "test_term",
    "typed_values",
]


@contextmanager
def open_parquet(fs: Any, path: str) -> Iterator[Any]:
    """A ``pyarrow.parquet.ParquetFile`` for a path on ``fs``.

    Local files are opened by pyarrow itself (native I/O, about 3x faster than through a
    Python file object); other filesystems go through fsspec.
    """
    import pyarrow.parquet as pq

    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        pf = pq.ParquetFile(path)
        try:
            yield pf
        finally:
            pf.close()
        return
    with fs.open(path, "rb") as f:
        yield pq.ParquetFile(f)


_OPS = ("=", "==", "!=", "<", "<=", ">", ">=", "in", "not in")


def hive_values(rel_dir: str) -> dict[str, str]:
    out = {}
    for seg in rel_dir.split("/"):
        if "=" in seg:
            k, v = seg.split("=", 1)
            out[urllib.parse.unquote(k)] = urllib.parse.unquote(v)
    return out


def typed_values(values: list[str]) -> tuple[str, list[Any]]:
    for kind, conv in (("int64", int), ("float64", float)):
        try:
            return kind, [conv(v) for v in values]
        except ValueError:
            continue
    return "string", list(values)


def normalise_filters(filters: Any) -> list[list[tuple[str, str, Any]]]:
    """DNF as pyarrow takes it: a list of AND-tuples, or a list of such lists (OR)."""
    if not filters:
        return []
    if all(isinstance(f, list | tuple) and len(f) == 3 and isinstance(f[0], str) for f in filters):
        filters = [filters]
    out = []
    for conj in filters:
        terms = []
        for term in conj:
            if not (isinstance(term, list | tuple) and len(term) == 3):
                raise DatasetError(f"filters: each term must be (column, op, value); got {term!r}")
            col, op, val = term
            if op not in _OPS:
                raise DatasetError(
                    f"filters: operator {op!r} on column {col!r} is not one of {', '.join(_OPS)}"
                )
            terms.append((str(col), op, val))
        out.append(terms)
    return out


def test_term(value: Any, op: str, target: Any) -> bool:
    if op in ("in", "not in"):
        found = value in set(target)
        return found if op == "in" else not found
    if op in ("=", "=="):
        return value == target
    if op == "!=":
        return value != target
    return {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[
        op
    ]


def row_mask(df: pd.DataFrame, conj: list[tuple[str, str, Any]]) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for col, op, val in conj:
        s = df[col]
        if op in ("in", "not in"):
            m = s.isin(list(val))
            mask &= m if op == "in" else ~m
        else:
            mask &= {
                "=": s == val,
                "==": s == val,
                "!=": s != val,
                "<": s < val,
                "<=": s <= val,
                ">": s > val,
                ">=": s >= val,
            }[op]
    return mask


# --------------------------------------------------------------------------- schemas


def parquet_meta(fs, path: str) -> tuple[dict[str, str], list[int], int]:

    try:
        with open_parquet(fs, path) as pf:
            md = pf.metadata
            schema = md.schema.to_arrow_schema()
            groups = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    except Exception as exc:
        raise DatasetError(
            f"cannot read Parquet file {to_uri(fs, path)}: {type(exc).__name__}: {exc}"
        ) from exc
    types = {f.name: str(f.type) for f in schema if not f.name.startswith("__index_level_")}
    return types, groups, int(md.num_rows)


def csv_head(fs, path: str, n: int = 1000) -> dict[str, str]:
    try:
        with fs.open(path, "rb", compression="infer") as f:
            head = pd.read_csv(f, nrows=n)
    except Exception as exc:
        raise DatasetError(
            f"cannot read CSV file {to_uri(fs, path)}: {type(exc).__name__}: {exc}"
        ) from exc
    return {str(c): str(t) for c, t in head.dtypes.items()}


def is_numeric_type(t: str) -> bool:
    t = t.lower()
    return t.startswith(("int", "uint", "float", "double", "halffloat", "bool", "decimal"))
