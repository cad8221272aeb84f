"""Filesystems for local paths and ``s3://`` URIs (fsspec / s3fs), credential hygiene, and the
one place where bytes are written (:func:`put_bytes`, :func:`put_parquet`)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from .errors import storage_error

__all__ = [
    "SECRET_KEYS",
    "exists",
    "filesystem",
    "is_local",
    "join",
    "location",
    "overlapping",
    "put_bytes",
    "put_parquet",
    "read_text",
    "redact",
    "remove",
    "to_uri",
    "write_text",
]

#: storage_options keys whose values are never printed, logged or written to a manifest
SECRET_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "session_token",
        "secret_access_key",
        "access_key_id",
    }
)


def redact(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``storage_options`` with every credential replaced by ``'***'``."""
    out: dict[str, Any] = {}
    for k, v in (options or {}).items():
        if k.lower() in SECRET_KEYS:
            out[k] = "***"
        elif isinstance(v, Mapping):
            out[k] = redact(v)
        else:
            out[k] = v
    return out


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None):
    """``(fs, path)`` for a URI; ``path`` has no protocol. Credentials come from
    ``storage_options`` or the standard environment/profile of the backend (s3fs/boto)."""
    opts = dict(storage_options or {})
    fs, path = url_to_fs(str(uri), **opts)
    return fs, path.rstrip("/") if path not in ("/", "") else path


def join(base: str, *parts: str) -> str:
    """Join path segments with ``/`` (object-store style)."""
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The user-facing URI of a path on ``fs`` (``s3://bucket/key`` or a local path)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return f"{protocol}://{path}"


def read_text(uri: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The text of a small file (a config) at a local path or URI.

    Raises ``FileNotFoundError`` when there is no such file.
    """
    fs, path = filesystem(uri, storage_options)
    return fs.cat_file(path).decode()


def write_text(uri: str, text: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write a small text file (its folder is created if needed)."""
    fs, path = filesystem(uri, storage_options)
    put_bytes(fs, path, text.encode(), make_parent=True)


def exists(uri: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """True when a file or folder exists at ``uri`` (listing caches are refreshed first)."""
    fs, path = filesystem(uri, storage_options)
    fs.invalidate_cache(path)
    return fs.exists(path)


def remove(uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Remove a file or a folder with everything under it; nothing there is not an error."""
    fs, path = filesystem(uri, storage_options)
    fs.invalidate_cache(path)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.invalidate_cache(path)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem (folders exist there; object stores have only keys)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"file", "local"} & set(protocols))


def put_bytes(
    fs: fsspec.AbstractFileSystem, path: str, data: bytes, *, make_parent: bool = True
) -> int:
    """Write ``data`` to ``path``; returns the size. Any failure is a :class:`StorageError`
    naming the URI.

    On a local filesystem the parent folder is created (``make_parent``); on object stores
    nothing is created but the object itself: a missing bucket is an error, never created.
    """
    try:
        if make_parent and is_local(fs):
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)
    except Exception as exc:
        raise storage_error("writing", to_uri(fs, path), exc) from exc
    return len(data)


def put_parquet(
    fs: fsspec.AbstractFileSystem, path: str, df: Any, *, make_parent: bool = True
) -> int:
    """Write a pandas frame as one Parquet file (no index); returns the size in bytes.

    Dictionary encoding only for the columns of codes (:func:`dictionary_columns`): on a
    column of unique values (ids, distances, scores) Parquet's dictionary encoder grows a
    hash table before it gives up, ~57 MiB for 262k rows measured here (8.8 MiB without),
    which on a worker comes on top of its blocks; the file is no larger without it.
    """
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, use_dictionary=dictionary_columns(df))
    return put_bytes(fs, path, buf.getvalue(), make_parent=make_parent)


def dictionary_columns(df: Any) -> list[str]:
    """The columns worth dictionary-encoding: codes (integers of at most 32 bits, booleans,
    categoricals), e.g. segment IDs; not ids, floats or free text."""
    import pandas as pd

    out = []
    for name, dtype in df.dtypes.items():
        code = isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype)
        if code or (pd.api.types.is_integer_dtype(dtype) and getattr(dtype, "itemsize", 8) <= 4):
            out.append(str(name))
    return out


def location(uri: str) -> tuple[str, tuple[str, ...]]:
    """``(scheme, path segments)`` of a URI, with no I/O: local paths are made absolute
    (``~`` expanded), ``s3://bucket/key`` gives ``('s3', ('bucket', 'key', ...))``.

    Raises ValueError for a ``..`` segment: on S3 it would be a literal key while locally it
    leaves the folder, so the same URI would mean two places.
    """
    text = str(uri).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "file", text
    scheme = {"local": "file", "s3a": "s3"}.get(scheme.lower(), scheme.lower())
    segments = [s for s in rest.replace("\\", "/").split("/") if s not in ("", ".")]
    if ".." in segments:
        raise ValueError(
            f"must not contain a '..' segment (got {uri!r}): on S3 it is a literal key while "
            "locally it leaves the folder; give the location without '..'"
        )
    if scheme == "file":
        absolute = os.path.abspath(os.path.expanduser(rest or "."))
        segments = [s for s in absolute.replace("\\", "/").split("/") if s]
    return scheme, tuple(segments)


def overlapping(a: str, b: str) -> bool:
    """True when one location is the other or lies under it (either way round)."""
    (sa, pa), (sb, pb) = location(a), location(b)
    if sa != sb:
        return False
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]
