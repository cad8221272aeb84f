"""The commit protocol: immutable attempts and one pointer swap, the way table formats commit.

Layout of a run (``run_id`` is a hash of the resolved config and the input fingerprint)::

    {output}/{run_id}/_SUCCESS                     the commit pointer: names the committed attempt
    {output}/{run_id}/attempt-{id}/manifest.json   the committed files (assignments/, scores/,
    {output}/{run_id}/attempt-{id}/...             model/, sweep.parquet, plots)
    {output}/{run_id}/_LEASE.{generation}          while an attempt is being written
    {output}/LATEST                                the newest committed run id

Rules:

* An attempt writes only under its own ``attempt-{id}/`` folder, and only while it holds the
  run's lease (:mod:`.lease`: an atomic create, so concurrent runs of one id cannot both
  write). It never deletes another live attempt's files.
* Commit = write ``manifest.json`` (listing every file) into the attempt, check the lease is
  still ours, then write ``_SUCCESS`` naming the attempt: a single object write, so readers see
  the old committed attempt or the new one, never a mix. ``LATEST`` is written after it.
* A committed attempt is never modified. A forced rerun writes a new attempt beside it; the
  previous attempt is removed only after the pointer names the new one. A failed attempt
  removes its own folder; a crashed one leaves a folder without a pointer, which the next
  lease holder removes.
* Readers (``show``, ``load_model``, the skip check of the next run) follow ``_SUCCESS``.
  Runs committed before attempts existed (files directly under ``{run_id}/``, a pointer
  without ``attempt``) are read as they are.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..exceptions import StorageError
from ..faults import fault_point
from .fs import filesystem, is_local, join, put_bytes, put_parquet, to_uri
from .lease import DEFAULT_LEASE_SECONDS, LEASE_PREFIX, LeaseHeldError, RunLease
from .runs import (
    ATTEMPT_PREFIX,
    LATEST,
    MANIFEST,
    SUCCESS,
    committed_folder,
    latest_run,
    read_manifest,
    read_pointer,
    storage_op,
)

__all__ = [
    "SUCCESS",
    "FileRecord",
    "LeaseHeldError",
    "RunCommit",
    "canonical_json",
    "committed_folder",
    "latest_run",
    "read_manifest",
    "run_id_for",
    "storage_op",
]

logger = logging.getLogger(__name__)


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


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def _new_attempt_id() -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass
class RunCommit:
    """Writes one attempt of a run under ``{output_uri}/{run_id}/attempt-{id}/`` and commits it.

    Parameters
    ----------
    output_uri : str
        Local folder or ``s3://bucket/prefix``.
    run_id : str
    storage_options : mapping, optional
        fsspec/s3fs options; credentials never leave this object.
    lease_seconds : float
        Lifetime of the run's lease without renewal (see :mod:`.lease`).
    """

    output_uri: str
    run_id: str
    storage_options: Mapping[str, Any] | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    _files: dict[str, FileRecord] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.fs, self.root = filesystem(self.output_uri, self.storage_options)
        self.run_path = join(self.root, self.run_id)
        self.attempt_id: str | None = None
        self._created_root = False
        self._lease = RunLease(self.fs, self.run_path, self.lease_seconds)

    @property
    def files(self) -> list[FileRecord]:
        """Files written so far by this attempt (a retried write replaces its record)."""
        return list(self._files.values())

    # ------------------------------------------------------------------ state
    @property
    def uri(self) -> str:
        """User-facing URI of the run folder ``{output}/{run_id}``."""
        return to_uri(self.fs, self.run_path)

    @property
    def attempt_path(self) -> str:
        """Folder of this attempt (after :meth:`begin`)."""
        if self.attempt_id is None:
            raise StorageError(f"no attempt of run {self.uri} has begun")
        return join(self.run_path, f"{ATTEMPT_PREFIX}{self.attempt_id}")

    @property
    def results_uri(self) -> str:
        """User-facing URI of the folder with this attempt's files."""
        return to_uri(self.fs, self.attempt_path)

    def path(self, rel: str) -> str:
        """Filesystem path of a file of this attempt."""
        return join(self.attempt_path, rel)

    def is_committed(self) -> bool:
        """True when the run has a commit pointer (``_SUCCESS``)."""
        return read_pointer(self.fs, self.run_path) is not None

    def committed_uri(self) -> str | None:
        """URI of the committed attempt's folder (None when not committed)."""
        folder = committed_folder(self.fs, self.run_path)
        return None if folder is None else to_uri(self.fs, folder)

    def manifest(self) -> dict[str, Any]:
        """The committed manifest (StorageError if the run is not committed)."""
        folder = committed_folder(self.fs, self.run_path)
        if folder is None:
            raise StorageError(f"run {self.uri} is not committed (no {SUCCESS})")
        with storage_op("reading", self.fs, join(folder, MANIFEST)):
            return json.loads(self.fs.cat_file(join(folder, MANIFEST)))

    # ------------------------------------------------------------------ attempt
    def begin(self, force: bool = False) -> bool:
        """Start an attempt. Returns False (skip) if the run is committed and not ``force``.

        Takes the run's lease (:class:`~.lease.LeaseHeldError` if a live attempt holds it),
        removes attempts abandoned by crashed processes, and never touches the committed
        attempt: it stays readable until :meth:`commit` switches the pointer.
        """
        self._check_bucket()
        with storage_op("checking", self.fs, self.root):
            self._created_root = is_local(self.fs) and not self.fs.exists(self.root)
        if self.is_committed() and not force:
            logger.info("run %s is already committed: skipping", self.uri)
            return False
        attempt = _new_attempt_id()
        with storage_op("taking the lease of", self.fs, self.run_path):
            self._lease.acquire(attempt)
        if self.is_committed() and not force:  # committed meanwhile by another process
            self._lease.release()
            return False
        self.attempt_id = attempt
        self._files = {}
        self._remove_abandoned()
        return True

    @contextmanager
    def attempt(self) -> Iterator[RunCommit]:
        """Context of one write attempt: on any error, this attempt's own files are removed
        (never another's), the lease is released, and folders it created and left empty go."""
        try:
            yield self
        except BaseException:
            self._remove_own()
            self._lease.release()
            self._remove_empty_folders()
            raise
        finally:
            self._lease.release()

    def _check_bucket(self) -> None:
        """Object stores: the bucket must exist (kmeans-dask never creates one)."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol not in ("s3", "s3a", "gs", "gcs", "az", "abfs"):
            return
        bucket = self.root.split("/", 1)[0]
        with storage_op("checking the bucket of", self.fs, self.root):
            self.fs.invalidate_cache(bucket)
            found = self.fs.exists(bucket)
        if not found:
            raise StorageError(
                f"output bucket {bucket!r} of {self.output_uri} does not exist (or these "
                "credentials cannot see it); create it first: kmeans-dask never creates buckets"
            )

    def _children(self) -> list[str]:
        self.fs.invalidate_cache(self.run_path)
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.run_path, False)]
        except FileNotFoundError:
            return []

    def _remove_abandoned(self) -> None:
        """Remove attempt folders that no live process owns (we hold the lease)."""
        pointer = read_pointer(self.fs, self.run_path) or {}
        keep = {pointer.get("attempt"), f"{ATTEMPT_PREFIX}{self.attempt_id}"}
        for name in self._children():
            if name.startswith(ATTEMPT_PREFIX) and name not in keep:
                logger.info("removing abandoned attempt %s of %s", name, self.uri)
                self._rm(join(self.run_path, name))

    def _remove_own(self) -> None:
        if self.attempt_id is None:
            return
        # tasks of a failed computation may still be finishing their writes: try again
        for wait in (0.0, 0.2, 0.5, 1.0, 2.0):
            time.sleep(wait)
            try:
                self._rm(self.attempt_path)
                return
            except StorageError as cleanup:
                error = cleanup
        # best effort: the next lease holder removes an abandoned attempt
        logger.warning("could not remove failed attempt %s: %s", self.attempt_path, error)

    def _rm(self, path: str) -> None:
        with storage_op("removing", self.fs, path):
            self.fs.invalidate_cache(path)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
            self.fs.invalidate_cache(self.run_path)

    def _remove_empty_folders(self) -> None:
        """Local folders this attempt created and left empty (object stores have none)."""
        if not is_local(self.fs):
            return
        folders = [self.run_path] + ([self.root] if self._created_root else [])
        for folder in folders:
            try:
                os.rmdir(folder)  # only if empty
            except OSError:
                return

    # ------------------------------------------------------------------ writers
    def _record(self, rec: FileRecord) -> FileRecord:
        self._files[rec.path] = rec
        return rec

    def write_bytes(self, rel: str, data: bytes) -> FileRecord:
        """Write a file of this attempt (e.g. a PNG)."""
        return self._record(FileRecord(rel, put_bytes(self.fs, self.path(rel), data)))

    def write_json(self, rel: str, obj: Any) -> FileRecord:
        """Write JSON (indented, keys sorted)."""
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        return self.write_bytes(rel, data)

    def write_table(self, rel: str, df: pd.DataFrame) -> FileRecord:
        """Write a small pandas frame as Parquet (no index)."""
        return self._record(FileRecord(rel, put_parquet(self.fs, self.path(rel), df), len(df)))

    def add_records(self, records: list[FileRecord]) -> None:
        """Register files that the workers wrote (see :func:`~.write.write_frames`)."""
        for rec in records:
            self._record(rec)

    # ------------------------------------------------------------------ commit
    def commit(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``manifest.json`` (every file listed), switch ``_SUCCESS`` to this attempt,
        write LATEST, then remove the attempt it replaced."""
        now = _now()
        name = f"{ATTEMPT_PREFIX}{self.attempt_id}"
        full = dict(manifest)
        full.update(run_id=self.run_id, attempt=name, committed_at=now)
        full["files"] = [r.as_dict() for r in sorted(self.files, key=lambda r: r.path)]
        self.write_json(MANIFEST, full)
        previous = read_pointer(self.fs, self.run_path)
        with storage_op("checking the lease of", self.fs, self.run_path):
            self._lease.check()
        fault_point("commit:before-pointer")
        pointer = {"run_id": self.run_id, "attempt": name, "committed_at": now}
        put_bytes(self.fs, join(self.run_path, SUCCESS), json.dumps(pointer).encode())
        fault_point("commit:after-pointer")
        self._write_latest()
        fault_point("commit:after-latest")
        if previous is not None:
            self._remove_replaced(previous)
        logger.info("committed run %s, %s (%d files)", self.uri, name, len(self.files))
        return full

    def _write_latest(self) -> None:
        try:
            put_bytes(self.fs, join(self.root, LATEST), f"{self.run_id}\n".encode())
        except StorageError as exc:
            raise StorageError(f"run {self.uri} committed but LATEST not updated: {exc}") from exc

    def _remove_replaced(self, previous: Mapping[str, Any]) -> None:
        """After the switch: the replaced attempt (or a pre-attempt run's files) goes."""
        old = previous.get("attempt", "")
        ours = f"{ATTEMPT_PREFIX}{self.attempt_id}"
        for name in self._children():
            legacy = not old and not name.startswith((ATTEMPT_PREFIX, SUCCESS, LEASE_PREFIX))
            if (old and name == old and name != ours) or legacy:
                try:
                    self._rm(join(self.run_path, name))
                except StorageError as exc:  # harmless: nothing points to it any more
                    logger.warning("could not remove replaced files %s: %s", name, exc)

    def remove_stale_lease(self) -> None:
        """Remove a lease whose process died or that expired (e.g. after a crash past the
        commit); a live lease is left alone."""
        with storage_op("checking the lease of", self.fs, self.run_path):
            cur = self._lease.current()
            if cur is not None and not cur.live():
                self._lease.remove(cur.generation)

    def repair_latest(self) -> None:
        """Point LATEST at this committed run if it names nothing committed or an older run
        (a process that died between ``_SUCCESS`` and LATEST)."""
        mine = read_pointer(self.fs, self.run_path)
        if mine is None:
            return
        latest = latest_run(to_uri(self.fs, self.root), self.storage_options)
        if latest == self.run_id:
            return
        other = None if latest is None else read_pointer(self.fs, join(self.root, latest))
        if other is None or str(other.get("committed_at", "")) < str(mine.get("committed_at", "")):
            logger.info("LATEST of %s repaired: %s -> %s", self.root, latest, self.run_id)
            self._write_latest()
