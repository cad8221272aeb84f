"""Listing a dataset's files (one listing per call) and fingerprinting them.

A location that does not exist is a :class:`DatasetError` naming it (or its missing bucket);
a listing the store refuses or cannot serve is a :class:`StorageError` naming the operation,
the URI and the bucket (see :mod:`.errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import DatasetError
from .errors import bucket_of, storage_errors
from .fs import filesystem, is_local, to_uri

__all__ = ["EXTENSIONS", "fingerprint", "fingerprints", "list_files"]

EXTENSIONS = {
    "parquet": (".parquet", ".parq", ".pq"),
    "csv": (".csv", ".csv.gz", ".csv.bz2", ".csv.zst"),
}


def _is_data_file(rel: str, fmt: str) -> bool:
    segments = rel.split("/")
    if any(s.startswith(("_", ".")) for s in segments):  # _SUCCESS, _metadata, .hidden
        return False
    return rel.lower().endswith(EXTENSIONS[fmt])


def _missing(fs: Any, uri: str) -> DatasetError:
    """The error for a location with nothing at it: its bucket is missing, or the path."""
    bucket = bucket_of(uri)
    if bucket is not None and not is_local(fs):
        scheme = str(uri).split("://", 1)[0]
        with storage_errors("checking the bucket of", f"{scheme}://{bucket}"):
            try:
                fs.info(bucket)
            except FileNotFoundError:
                return DatasetError(
                    f"{uri}: bucket {bucket!r} does not exist; check the uri (and the "
                    "endpoint_url in storage_options)"
                )
    return DatasetError(f"{uri} does not exist (no such file or folder); check the uri")


def list_files(uri: str, format: str = "parquet", storage_options: Mapping | None = None):
    """Data files under ``uri`` with their listing info (sorted by path).

    Files and folders whose name starts with ``_`` or ``.`` are ignored.

    Returns
    -------
    fs, root, files : filesystem, root path, list of (path, info dict)

    Raises
    ------
    DatasetError
        Nothing at ``uri`` (or its bucket does not exist), or no file of ``format`` there.
    StorageError
        The listing failed: access denied (naming the bucket), the network, the service.
    """
    fs, root = filesystem(uri, storage_options)
    with storage_errors("listing", uri):
        fs.invalidate_cache(root)
        if fs.isfile(root):
            return fs, root.rsplit("/", 1)[0], [(root, fs.info(root))]
        found = fs.exists(root)
        listing = fs.find(root, detail=True) if found else {}
    if not found:
        raise _missing(fs, uri)
    files = []
    for path, info in sorted(listing.items()):
        rel = path[len(root) :].lstrip("/")
        if info.get("type", "file") == "file" and _is_data_file(rel, format):
            files.append((path, info))
    if not files:
        exts = ", ".join(EXTENSIONS[format])
        raise DatasetError(
            f"no {format} files ({exts}) found at {uri}; check the input uri and format"
        )
    return fs, root, files


def fingerprints(fs: Any, files: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Identity of listed files (no data read): path, size, and the ETag (object stores) or
    modification time (local files)."""
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


def fingerprint(
    uri: str, format: str = "parquet", storage_options: Mapping | None = None
) -> list[dict[str, Any]]:
    """Identity of every input file from one listing (no data read): path, size, and the
    ETag (object stores) or modification time (local files)."""
    fs, _, files = list_files(uri, format, storage_options)
    return fingerprints(fs, files)
