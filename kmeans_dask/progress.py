"""Progress of long steps, reported by the library to whoever listens (a terminal's bars).

The library never draws anything: a long step (a pipeline stage, a K sweep, Lloyd, a pass
over blocks) opens a :func:`task` and advances it; the :class:`Reporter` current in the caller's
context decides what that looks like. The default reports nothing. The command line installs
a ``rich`` reporter on a terminal (:mod:`kmeans_dask.console`); a program can install its own::

    from kmeans_dask import progress

    class Printer:
        def start(self, description, total):
            return MyTask(description, total)   # has advance(n=1, status=None) and done()

    with progress.reporting(Printer()):
        KMeans(8).fit(X)

The current reporter lives in a :class:`contextvars.ContextVar`, so concurrent runs in other
threads or tasks never see each other's reporter and nothing outlives the ``with`` block.
Threads started by the library (the K sweep's fits) run in a copy of their caller's context
(:func:`in_context`). Reporters are called from several threads at once (the sweep's fits,
the Dask client's callback thread for blocks done), so their tasks must be thread-safe.

This module imports nothing beyond the standard library (it sits below every layer).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

__all__ = [
    "NULL",
    "ProgressTask",
    "Reporter",
    "current",
    "in_context",
    "reporting",
    "task",
]

T = TypeVar("T")


class ProgressTask(Protocol):
    """One step being reported: advanced as its units complete, then done."""

    def advance(self, n: int = 1, *, status: str | None = None) -> None:
        """``n`` more units done; ``status`` is a short text to show (e.g. the inertia)."""

    def done(self) -> None:
        """The step is over (also called when it failed)."""


class Reporter(Protocol):
    """Receives the steps: :meth:`start` returns the step's :class:`ProgressTask`."""

    def start(self, description: str, total: int | None) -> ProgressTask:
        """A step named ``description`` with ``total`` units (None: unknown, a spinner)."""


class _NullTask:
    __slots__ = ()

    def advance(self, n: int = 1, *, status: str | None = None) -> None:
        return None

    def done(self) -> None:
        return None


class _NullReporter:
    """Reports nothing (the default)."""

    __slots__ = ()
    _task = _NullTask()

    def start(self, description: str, total: int | None) -> ProgressTask:
        return self._task


#: the reporter that reports nothing
NULL: Reporter = _NullReporter()

_current: contextvars.ContextVar[Reporter] = contextvars.ContextVar(
    "kmeans_dask_progress", default=NULL
)


def current() -> Reporter:
    """The reporter of the calling context (:data:`NULL` unless one is installed)."""
    return _current.get()


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[Reporter]:
    """Install ``reporter`` for the calling context inside the block (None: :data:`NULL`)."""
    token = _current.set(reporter if reporter is not None else NULL)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


@contextmanager
def task(description: str, total: int | None = None) -> Iterator[ProgressTask]:
    """A step reported to the current reporter; :meth:`ProgressTask.done` on leaving."""
    t = _current.get().start(description, total)
    try:
        yield t
    finally:
        t.done()


def in_context(func: Callable[..., T]) -> Callable[..., T]:
    """``func`` to run in another thread in a copy of the calling context (its reporter and
    an orchestrator's run context): a fresh copy per call, so concurrent calls never share
    one context."""
    ctx = contextvars.copy_context()

    def call(*args: Any, **kwargs: Any) -> T:
        return ctx.copy().run(func, *args, **kwargs)

    return call
