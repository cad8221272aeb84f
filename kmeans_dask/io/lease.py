"""One writer per run id: a lease taken with an atomic create, renewed while the attempt runs.

A lease is a small JSON object ``{run}/_LEASE.{generation}`` naming the attempt that holds
it, its host and process, and when it expires. It is taken by creating the next generation
*exclusively*:

* local folders: ``open(O_CREAT | O_EXCL)``, atomic on POSIX filesystems;
* S3: a conditional put (``If-None-Match: *``, s3fs ``mode="create"``), atomic on AWS S3 and
  on S3-compatible stores that implement conditional writes (moto, MinIO);
* other fsspec stores: "exists, then write", which is not atomic (documented, best effort).

Of two processes that try to create the same generation, exactly one succeeds. The holder
renews its lease (rewrites its own object) every third of the lease time from a background
thread; a lease that expired, or whose process is known dead (same host, no such pid), may be
taken over by creating the next generation. Before it commits, an attempt checks that no
newer generation exists, so an attempt that lost its lease (paused past the expiry) never
switches the committed pointer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..exceptions import StorageError
from ..progress import in_context
from .fs import is_local, join, to_uri

__all__ = ["DEFAULT_LEASE_SECONDS", "Lease", "LeaseHeldError", "RunLease"]

logger = logging.getLogger(__name__)

LEASE_PREFIX = "_LEASE."
#: seconds a lease lives without renewal (a crashed process on another host blocks its run
#: id for at most this long; on the same host a dead process is detected at once)
DEFAULT_LEASE_SECONDS = 600.0


class LeaseHeldError(StorageError):
    """Another live attempt holds the lease of this run id (a concurrent run)."""


@dataclass(frozen=True)
class Lease:
    """The content of a lease object."""

    generation: int
    attempt: str
    host: str
    pid: int
    expires_at: float

    def live(self, now: float | None = None) -> bool:
        """Not expired, and its process is not known to be dead."""
        if (now or time.time()) >= self.expires_at:
            return False
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # exists, owned by someone else
                return True
        return True

    def describe(self) -> str:
        left = max(0.0, self.expires_at - time.time())
        return (
            f"attempt {self.attempt} (host {self.host}, pid {self.pid}; the lease expires in "
            f"{left:.0f} s unless renewed)"
        )


def _create_exclusive(fs: Any, path: str, data: bytes) -> None:
    """Create ``path`` only if it does not exist (FileExistsError otherwise)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    if protocol in ("s3", "s3a"):
        fs.pipe_file(path, data, mode="create")
        return
    fs.invalidate_cache(path)
    if fs.exists(path):  # not atomic on other stores (see the module docstring)
        raise FileExistsError(path)
    fs.pipe_file(path, data)


class RunLease:
    """The lease of one run folder (``run_path`` on ``fs``)."""

    def __init__(self, fs: Any, run_path: str, seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.fs = fs
        self.run_path = run_path
        self.seconds = float(seconds)
        self.held: Lease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _path(self, generation: int) -> str:
        return join(self.run_path, f"{LEASE_PREFIX}{generation:08d}")

    def current(self) -> Lease | None:
        """The newest lease of the run (None when there is none)."""
        self.fs.invalidate_cache(self.run_path)
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.run_path, detail=False)]
        except FileNotFoundError:
            return None
        gens = sorted(int(n[len(LEASE_PREFIX) :]) for n in names if n.startswith(LEASE_PREFIX))
        for gen in reversed(gens):
            try:
                return Lease(**json.loads(self.fs.cat_file(self._path(gen))))
            except FileNotFoundError:  # released meanwhile
                continue
        return None

    def acquire(self, attempt: str) -> Lease:
        """Take the lease for ``attempt``; LeaseHeldError when a live attempt holds it."""
        for _ in range(10):
            cur = self.current()
            if cur is not None and cur.live():
                raise LeaseHeldError(
                    f"run {to_uri(self.fs, self.run_path)} is being written by another "
                    f"{cur.describe()}; not starting a concurrent attempt"
                )
            lease = Lease(
                (cur.generation + 1) if cur else 1,
                attempt,
                socket.gethostname(),
                os.getpid(),
                time.time() + self.seconds,
            )
            try:
                _create_exclusive(self.fs, self._path(lease.generation), self._encode(lease))
            except FileExistsError:
                continue  # another process took this generation first: look again
            self.held = lease
            if cur is not None:
                logger.info("took over the expired lease of %s", cur.describe())
                self.remove(cur.generation)
            self._start_renewal()
            return lease
        raise LeaseHeldError(f"could not take the lease of {to_uri(self.fs, self.run_path)}")

    def check(self) -> None:
        """Raise StorageError unless this process still holds the newest lease."""
        cur = self.current()
        if self.held is None or cur is None or cur.generation != self.held.generation:
            other = cur.describe() if cur is not None else "nobody (lease removed)"
            raise StorageError(
                f"the lease of run {to_uri(self.fs, self.run_path)} was lost to {other}; "
                "this attempt does not commit"
            )

    def release(self) -> None:
        """Stop renewing and remove this process's lease object."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.held is not None:
            self.remove(self.held.generation)
            self.held = None

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _encode(lease: Lease) -> bytes:
        return json.dumps(asdict(lease), sort_keys=True).encode()

    def remove(self, generation: int) -> None:
        """Remove the lease object of ``generation`` (gone already is fine)."""
        try:
            self.fs.rm(self._path(generation))
        except FileNotFoundError:
            pass
        except Exception as exc:  # a stale lease object is harmless: the next run takes over
            logger.warning("could not remove lease %s: %s", self._path(generation), exc)
        self.fs.invalidate_cache(self.run_path)

    def _start_renewal(self) -> None:
        self._stop.clear()
        # in the caller's context: its log records keep an orchestrator's run context
        self._thread = threading.Thread(
            target=in_context(self._renew_loop), name="kmeans-dask-lease", daemon=True
        )
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            held = self.held
            if held is None:
                return
            renewed = Lease(
                held.generation, held.attempt, held.host, held.pid, time.time() + self.seconds
            )
            try:
                self.fs.pipe_file(self._path(held.generation), self._encode(renewed))
                self.held = renewed
            except Exception as exc:  # the commit-time check decides; keep trying
                logger.warning("could not renew the lease of %s: %s", self.run_path, exc)
