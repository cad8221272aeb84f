"""The commit protocol: a run writes only under ``{output}/{run_id}/``, ``_SUCCESS`` last.

Readers trust a run only if its ``_SUCCESS`` exists; ``{output}/LATEST`` names the newest
committed run and is written after ``_SUCCESS``. A rerun with the same ``run_id`` (same
resolved config, same input fingerprint) finds ``_SUCCESS`` and skips, unless forced. A
leftover partial attempt (files, no ``_SUCCESS``) is removed before a new attempt writes,
and an attempt that fails removes what it wrote (best effort), so a crashed process at worst
leaves an uncommitted folder that the next attempt cleans.

Object stores have no atomic rename, so this protocol relies only on "a file written
last", which s3 and local filesystems both honour.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..exceptions import StorageError
from .fs import filesystem, join, put_bytes, put_parquet, to_uri

__all__ = [
    "SUCCESS",
    "FileRecord",
    "RunCommit",
    "canonical_json",
    "latest_run",
    "read_manifest",
    "run_id_for",
]

logger = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
LATEST = "LATEST"
MANIFEST = "manifest.json"


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_id_for(config: Mapping[str, Any], inputs: Any, name: str = "run") -> str:
    """``{name}-{hash}``: a hash of the resolved config and the input fingerprint.

    The same config on the same data gives the same id; any change to either gives a new one.
    Pass the config *without* credentials (they must not influence or leak into the id).
    """
    digest = hashlib.sha256(canonical_json({"config": config, "inputs": inputs}).encode())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    return f"{slug}-{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class FileRecord:
    """One file a run wrote (path relative to the run folder)."""

    path: str
    size: int
    rows: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {"path": self.path, "size": self.size}
        if self.rows is not None:
            d["rows"] = self.rows
        return d


def latest_run(output_uri: str, storage_options: Mapping | None = None) -> str | None:
    """The run id that ``{output}/LATEST`` names, or None."""
    fs, root = filesystem(output_uri, storage_options)
    path = join(root, LATEST)
    fs.invalidate_cache(root)
    if not fs.exists(path):
        return None
    return fs.cat_file(path).decode().strip() or None


def read_manifest(uri: str, storage_options: Mapping | None = None) -> dict[str, Any]:
    """The manifest of a committed run; ``uri`` is the run folder ``{output}/{run_id}``, or
    an output folder whose ``LATEST`` run is read.

    Raises
    ------
    StorageError
        ``uri`` is neither a run folder nor an output folder with ``LATEST``, or the run is
        not committed (no ``_SUCCESS``).
    """
    fs, path = filesystem(uri, storage_options)
    fs.invalidate_cache(path)
    if not fs.exists(join(path, MANIFEST)):
        latest = latest_run(uri, storage_options)
        if latest is None:
            raise StorageError(
                f"{uri} is not a run folder and has no {LATEST}; pass a run folder "
                "{output}/{run_id} or an output folder with committed runs"
            )
        path = join(path, latest)
    base, run_id = path.rsplit("/", 1)
    return RunCommit(to_uri(fs, base), run_id, storage_options).manifest()


@dataclass
class RunCommit:
    """Writes one run's files under ``{output_uri}/{run_id}/`` and commits them.

    Parameters
    ----------
    output_uri : str
        Local folder or ``s3://bucket/prefix``.
    run_id : str
    storage_options : mapping, optional
        fsspec/s3fs options; credentials never leave this object.
    """

    output_uri: str
    run_id: str
    storage_options: Mapping[str, Any] | None = None
    _files: dict[str, FileRecord] = field(default_factory=dict, repr=False)

    @property
    def files(self) -> list[FileRecord]:
        """Files written so far (a retried write replaces its earlier record)."""
        return list(self._files.values())

    def __post_init__(self) -> None:
        self.fs, self.root = filesystem(self.output_uri, self.storage_options)
        self.run_path = join(self.root, self.run_id)

    # ------------------------------------------------------------------ state
    @property
    def uri(self) -> str:
        """User-facing URI of the run folder."""
        return to_uri(self.fs, self.run_path)

    def path(self, rel: str) -> str:
        """Filesystem path of a file of this run."""
        return join(self.run_path, rel)

    def _refresh(self) -> None:
        # s3fs caches listings forever by default: look again before every decision
        self.fs.invalidate_cache(self.root)
        self.fs.invalidate_cache(self.run_path)

    def is_committed(self) -> bool:
        """True when ``_SUCCESS`` exists for this run."""
        self._refresh()
        return self.fs.exists(self.path(SUCCESS))

    def manifest(self) -> dict[str, Any]:
        """The committed manifest (raises if the run is not committed)."""
        if not self.is_committed():
            raise StorageError(f"run {self.uri} is not committed (no {SUCCESS})")
        return json.loads(self.fs.cat_file(self.path(MANIFEST)))

    # ------------------------------------------------------------------ attempt
    def begin(self, force: bool = False) -> bool:
        """Prepare an attempt. Returns False (skip) if the run is committed and not ``force``.

        A partial attempt left behind is removed; with ``force`` a committed run is first
        un-committed (``_SUCCESS`` removed), then removed.
        """
        if self.is_committed():
            if not force:
                logger.info("run %s is already committed: skipping", self.uri)
                return False
            self.fs.rm(self.path(SUCCESS))
            logger.info("run %s is committed; recomputing (force)", self.uri)
        self._remove_run_folder()
        self._files = {}
        return True

    def _remove_run_folder(self) -> None:
        self._refresh()
        if self.fs.exists(self.run_path):
            logger.info("removing the uncommitted files of %s", self.uri)
            self.fs.rm(self.run_path, recursive=True)
        self._refresh()

    @contextmanager
    def attempt(self) -> Iterator[RunCommit]:
        """Context of one write attempt: on any error, what was written is removed."""
        try:
            yield self
        except BaseException:
            try:
                self._remove_run_folder()
            except Exception as cleanup:  # pragma: no cover - best effort
                logger.warning("could not remove partial run %s: %s", self.uri, cleanup)
            raise

    # ------------------------------------------------------------------ writers
    def _record(self, rec: FileRecord) -> FileRecord:
        self._files[rec.path] = rec
        return rec

    def _write(self, rel: str, data: bytes) -> FileRecord:
        size = put_bytes(self.fs, self.path(rel), data, make_parent=True)
        return self._record(FileRecord(rel, size))

    def write_bytes(self, rel: str, data: bytes) -> FileRecord:
        """Write a file of this run (e.g. a PNG)."""
        return self._write(rel, data)

    def write_json(self, rel: str, obj: Any) -> FileRecord:
        """Write JSON (indented, keys sorted)."""
        return self._write(rel, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def write_table(self, rel: str, df: pd.DataFrame) -> FileRecord:
        """Write a small pandas frame as Parquet (no index)."""
        size = put_parquet(self.fs, self.path(rel), df, make_parent=True)
        return self._record(FileRecord(rel, size, len(df)))

    def add_records(self, records: list[FileRecord]) -> None:
        """Register files that the workers wrote (see :func:`~.write.write_frames`)."""
        for rec in records:
            self._record(rec)

    # ------------------------------------------------------------------ commit
    def commit(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``manifest.json`` (with every file listed), then ``_SUCCESS``, then LATEST."""
        now = _dt.datetime.now(_dt.UTC).isoformat()
        full = dict(manifest)
        full["run_id"] = self.run_id
        full["committed_at"] = now
        full["files"] = [r.as_dict() for r in sorted(self.files, key=lambda r: r.path)]
        self.write_json(MANIFEST, full)
        self._write(SUCCESS, json.dumps({"run_id": self.run_id, "committed_at": now}).encode())
        try:
            self.fs.pipe_file(join(self.root, LATEST), f"{self.run_id}\n".encode())
        except Exception as exc:
            raise StorageError(f"run committed but LATEST not updated: {exc}") from exc
        self._refresh()
        logger.info("committed run %s (%d files)", self.uri, len(self.files))
        return full
