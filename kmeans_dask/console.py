"""What the command line shows while a job runs: one log line per stage, live progress bars on
a terminal, and the tools' own chatter kept out of the way.

* The library logs under ``kmeans_dask``: one INFO line per stage (``stage NAME done in S s``)
  and a few facts (the cluster, the input, the memory plan, the chosen K, the commit); per-K,
  per-iteration and per-round detail is DEBUG (``-v``). The CLI prints these records once,
  with its own handler on stderr (``rich`` on a terminal, plain timestamped lines otherwise).
* Prefect gets the same records through its own setting ``PREFECT_LOGGING_EXTRA_LOGGERS``
  (:func:`environment` adds ``kmeans_dask`` to it): Prefect attaches its API handler to the
  ``kmeans_dask`` logger, so a flow run's logs in the UI hold every stage line, exactly once.
  Prefect's console handler shows warnings and errors only (its task-state lines repeat the
  stage lines) unless ``-v``.
* Dask's ``distributed`` loggers (scheduler, nanny, worker start and stop) log at WARNING
  unless ``-v``; the embedded Prefect server sends no telemetry.
* On a terminal, :class:`RichReporter` draws a live bar per long step reported through
  :mod:`kmeans_dask.progress` (a stage, the K sweep, each Lloyd run, the assignment and
  scoring passes); without a terminal nothing is drawn (no control codes in logs).

Settings the user has set in the environment are left as they are.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from . import progress

__all__ = [
    "RichReporter",
    "environment",
    "library_logging",
    "quiet_defaults",
    "reporter",
    "setup_logging",
]

LIBRARY_LOGGER = "kmeans_dask"
#: seconds the CLI waits for Prefect's temporary server to start (Prefect's default: 20)
EPHEMERAL_STARTUP_SECONDS = 180


def quiet_defaults(
    verbose: bool, env: Mapping[str, str], prefect_console: bool = False
) -> dict[str, str]:
    """The environment settings the CLI adds, given the current ``env`` (only those not set).

    * ``PREFECT_SERVER_ANALYTICS_ENABLED=false``: the temporary server sends no telemetry
      (without internet it logs an ERROR);
    * ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``: a longer wait for the temporary
      server's first start;
    * ``kmeans_dask`` added to ``PREFECT_LOGGING_EXTRA_LOGGERS``, with
      ``PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW=ignore`` (records outside a flow run stay
      local);
    * unless ``verbose``: Dask's ``distributed`` loggers at WARNING
      (``DASK_LOGGING__DISTRIBUTED``, also read by the worker processes), and, unless
      ``prefect_console`` (``serve``: Prefect's lines about the runs it starts are its
      output), Prefect's console handler at WARNING (``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL``).
    """
    out: dict[str, str] = {}
    if "PREFECT_SERVER_ANALYTICS_ENABLED" not in env:
        out["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in env:
        # the temporary server's first start creates its database (migrations): on a busy
        # 2-core machine that takes longer than Prefect's 20 s default
        out["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = str(EPHEMERAL_STARTUP_SECONDS)
    extra = [n.strip() for n in env.get("PREFECT_LOGGING_EXTRA_LOGGERS", "").split(",")]
    extra = [n for n in extra if n]
    if LIBRARY_LOGGER not in extra:
        out["PREFECT_LOGGING_EXTRA_LOGGERS"] = ",".join([*extra, LIBRARY_LOGGER])
    if "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW" not in env:
        # the library also logs outside a flow run (the plain path, the CLI's own lines):
        # nothing to send to the API then, and nothing to warn about
        out["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
    quiet = [] if verbose else [("DASK_LOGGING__DISTRIBUTED", "warning")]
    if not verbose and not prefect_console:
        quiet.append(("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING"))
    out.update({key: value for key, value in quiet if key not in env})
    return out


@contextmanager
def environment(verbose: bool, prefect_console: bool = False) -> Iterator[dict[str, str]]:
    """:func:`quiet_defaults` set in ``os.environ`` inside the block (before Prefect or Dask
    is imported, so that both read them; subprocesses inherit them), removed after."""
    added = quiet_defaults(verbose, os.environ, prefect_console)
    saved = {k: os.environ.get(k) for k in added}
    os.environ.update(added)
    levels = _quiet_loaded_loggers(verbose)
    try:
        yield added
    finally:
        for log, level in levels.items():
            log.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _quiet_loaded_loggers(verbose: bool) -> dict[logging.Logger, int]:
    """When ``distributed`` was imported already (its levels set from its config, e.g. the
    CLI called in-process), raise its loggers to WARNING here too; returns the levels to
    restore."""
    saved: dict[logging.Logger, int] = {}
    if verbose or "distributed" not in sys.modules:
        return saved
    for name in ("distributed", "distributed.scheduler", "distributed.nanny"):
        log = logging.getLogger(name)
        if log.level < logging.WARNING:
            saved[log] = log.level
            log.setLevel(logging.WARNING)
    return saved


def setup_logging(verbose: bool, stream: Any = None) -> logging.Handler:
    """The CLI's handler of the library's records: rich on a terminal, plain lines
    (``HH:MM:SS LEVEL message``) otherwise; INFO, or DEBUG with ``verbose``. The library's
    records do not propagate further (Prefect's console would print them a second time).
    On a terminal, the handler's ``console`` is the one to draw the bars on (log lines then
    print above the bars)."""
    stream = stream if stream is not None else sys.stderr
    level = logging.DEBUG if verbose else logging.INFO
    log = logging.getLogger(LIBRARY_LOGGER)
    for h in [h for h in log.handlers if getattr(h, "_kmeans_dask_cli", False)]:
        log.removeHandler(h)
    handler: logging.Handler
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(file=stream), show_path=False, markup=False, log_time_format="%X"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
        )
    handler._kmeans_dask_cli = True  # type: ignore[attr-defined]
    handler.setLevel(level)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    return handler


@contextmanager
def library_logging(verbose: bool, stream: Any = None) -> Iterator[logging.Handler]:
    """:func:`setup_logging` for the duration of a command: afterwards the handler is removed
    and the library logger's level and propagation are as before (a command run in-process,
    e.g. from a test or a notebook, leaves no handler on a stream that may be closed)."""
    log = logging.getLogger(LIBRARY_LOGGER)
    level, propagate = log.level, log.propagate
    handler = setup_logging(verbose, stream)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


class _RichTask:
    """A :class:`~kmeans_dask.progress.ProgressTask` on a rich ``Progress`` (thread-safe:
    rich's ``Progress`` locks; advances after :meth:`done` are ignored)."""

    def __init__(self, owner: RichReporter, task_id: Any) -> None:
        self._owner = owner
        self._id = task_id
        self._lock = threading.Lock()
        self._open = True

    def advance(self, n: int = 1, *, status: str | None = None) -> None:
        with self._lock:
            if not self._open:
                return
            fields = {} if status is None else {"status": status}
            self._owner.bars.update(self._id, advance=n, **fields)

    def done(self) -> None:
        with self._lock:
            if not self._open:
                return
            self._open = False
        self._owner._finish(self._id)


class RichReporter:
    """Live bars on the terminal, one per open step (removed when it is done); the display
    runs while at least one step is open."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            _count_column()(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._lock = threading.Lock()
        self._open = 0

    def start(self, description: str, total: int | None) -> progress.ProgressTask:
        with self._lock:
            if self._open == 0:
                self.bars.start()
            self._open += 1
            task_id = self.bars.add_task(description, total=total, status="")
        return _RichTask(self, task_id)

    def _finish(self, task_id: Any) -> None:
        with self._lock:
            self.bars.remove_task(task_id)
            self._open -= 1
            if self._open == 0:
                self.bars.stop()


def _count_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Count(ProgressColumn):
        """``done/total`` (nothing for a step of unknown size)."""

        def render(self, task: Any) -> Text:
            if task.total is None:
                return Text("")
            return Text(f"{int(task.completed)}/{int(task.total)}")

    return Count


@contextmanager
def reporter(handler: logging.Handler) -> Iterator[progress.Reporter]:
    """The progress reporter of the CLI's run, installed for the calling context inside the
    block: live bars on the terminal of ``handler`` (from :func:`setup_logging`) when it is
    a rich one, else :data:`kmeans_dask.progress.NULL` (plain log lines only)."""
    console = getattr(handler, "console", None)
    chosen = RichReporter(console) if console is not None else progress.NULL
    with progress.reporting(chosen) as r:
        yield r
