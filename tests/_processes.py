"""Real services as subprocesses for the end-to-end tests (``dask scheduler``/``dask worker``,
``prefect server``/``prefect worker``, ``kmeans-dask serve``): started with this checkout
first on PYTHONPATH, their output kept in files, and every one of them stopped at the end
(terminate, wait, kill), also when the test fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def executable(name: str) -> str:
    """The console script ``name`` of this Python's environment (its bin folder first)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name!r} is not installed next to {sys.executable} nor on PATH")
    return found


def environment(**extra: str) -> dict[str, str]:
    """This process's environment with this checkout first on PYTHONPATH (so that every
    subprocess imports the code under test), plus ``extra``."""
    env = dict(os.environ)
    paths = [str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra)
    return env


class Processes:
    """Subprocesses started by a test; :meth:`stop_all` ends them, the newest first."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None,
              cwd: Path | str | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or environment(),
            cwd=cwd,
            start_new_session=True,  # its own process group: stopped with its children
        )
        log.close()
        self.started.append((name, proc))
        return proc

    def output(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def outputs(self, tail: int = 4000) -> str:
        """The last ``tail`` characters of every process's output (for failure messages)."""
        parts = []
        for name, proc in self.started:
            parts.append(f"----- {name} (exit {proc.poll()}) -----\n{self.output(name)[-tail:]}")
        return "\n".join(parts)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float,
                 watch: subprocess.Popen | None = None) -> None:
        """Poll ``check`` until it is true; fail (with every output) after ``timeout`` s or
        when ``watch`` exits first."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if check():
                    return
            if watch is not None and watch.poll() is not None:
                raise RuntimeError(f"{what}: the process exited ({watch.returncode})\n"
                                   + self.outputs())
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {timeout:g} s\n" + self.outputs())
            time.sleep(0.2)

    @staticmethod
    def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Signal the process group, wait up to ``timeout`` s, then kill it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # children left behind in the group (e.g. a flow run's process)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for _name, proc in reversed(self.started):
            self.stop(proc)


@contextlib.contextmanager
def processes(logs: Path) -> Iterator[Processes]:
    """A :class:`Processes` whose subprocesses are stopped when the block ends, also on a
    failure or when the test run itself is terminated (SIGTERM becomes SystemExit here)."""
    procs = Processes(logs)

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield procs
    finally:
        try:
            procs.stop_all()
        finally:
            signal.signal(signal.SIGTERM, previous)
