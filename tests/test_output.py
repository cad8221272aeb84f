"""What a person sees while the job runs: the CLI's output without a terminal (one line per
stage, no duplicates, no ERROR, no Dask chatter), with -v on a terminal (the detail, live
bars), the flow run's logs in Prefect (each library line once), and the progress hook."""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

import numpy as np
import pytest
import yaml

from kmeans_dask import progress
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers

STAGES = ["plan", "read", "sweep", "fit", "assign", "score", "model", "commit"]
# the summary lines that do not depend on the attempt, on timings or on an earlier run
_STABLE = re.compile(
    r"^(Run \S+ committed\.|Run folder: |K = |  (inertia|n_iter|silhouette_sample|"
    r"silhouette_full_sq|calinski_harabasz|davies_bouldin|knee): )"
)


@pytest.fixture
def job(tmp_path):
    """A small run that goes through every stage (a K sweep and KNN scoring)."""
    df, _ = make_customers(1500, seed=8)
    q, _ = make_customers(150, seed=9, offset=1500)
    for name, frame in (("in", df), ("q", q)):
        (tmp_path / name).mkdir()
        frame.drop(columns="region").to_parquet(tmp_path / name / "a.parquet", index=False)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "output",
                "input": {
                    "uri": str(tmp_path / "in"),
                    "id_column": "customer_id",
                    "columns": DEMO_FEATURES,
                },
                "kmeans": {"k": "auto", "k_min": 2, "k_max": 4},
                "metrics": {"silhouette_sample_size": 500},
                "knn": {
                    "enabled": True,
                    "query": {"uri": str(tmp_path / "q"), "id_column": "customer_id"},
                },
                "output": {"uri": str(tmp_path / "out")},
                "cluster": {"n_workers": 1},
            }
        )
    )
    return cfg


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_LOGGING", "DASK_"))}
    return {**env, **extra}


def _once_per_stage(text: str, stages: list[str]) -> bool:
    """Every stage of ``stages`` has its ``stage NAME done in`` line, and no stage (of these
    or any other) has two."""
    counts = collections.Counter(re.findall(r"stage (\w+) done in", text))
    return set(stages) <= set(counts) and set(counts.values()) == {1}


def test_run_output_without_and_with_a_terminal(prefect_harness, cluster, job):
    """The default (Prefect) path, output captured (no terminal): every line once, no
    ERROR, no Dask INFO chatter, no control codes; one line per stage, then the summary.
    The flow run's logs in Prefect hold each stage line once (PREFECT_LOGGING_EXTRA_LOGGERS,
    set by the CLI). Then the plain path with -v on a terminal (on the session's cluster,
    to save a cluster's start): per-K and per-iteration lines, live bars of the stages, the
    sweep, Lloyd, assignment and scoring, and the same summary."""
    from prefect.settings import PREFECT_API_URL

    r = subprocess.run(
        [sys.executable, "-m", "kmeans_dask.cli", "run", str(job)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_env(PREFECT_API_URL=PREFECT_API_URL.value()),
    )
    assert r.returncode == 0, r.stderr
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    repeated = [line for line, n in collections.Counter(lines).items() if n > 1]
    assert not repeated, r.stderr
    assert not [line for line in lines if "ERROR" in line or "Traceback" in line], r.stderr
    assert "distributed." not in r.stderr and "Task run" not in r.stderr, r.stderr
    assert "\x1b[" not in r.stderr + r.stdout
    assert _once_per_stage(r.stderr, STAGES), r.stderr
    assert "Lloyd iteration" not in r.stderr and "sweep K=" not in r.stderr  # detail: -v
    assert re.search(r"sweep chose K=\d by silhouette \(silhouette by K: 2 ", r.stderr)
    assert "committed." in r.stdout and "Stage seconds: plan" in r.stdout

    messages = _flow_run_messages(str(job))
    assert _once_per_stage("\n".join(messages), STAGES), messages
    assert sum("sweep chose K=" in m for m in messages) == 1, messages

    env = _env(COLUMNS="160", TERM="xterm-256color")
    args = [sys.executable, "-m", "kmeans_dask.cli", "-v", "run", str(job), "--no-prefect"]
    args += ["--force", "--set", f"cluster.address={cluster.scheduler_address}"]
    code, out, term = _on_a_terminal(args, env)
    assert code == 0, term
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term)
    assert _once_per_stage(plain, STAGES), plain
    for detail in ("Lloyd iteration 1:", "sweep K=3:", "k-means|| init (K=4)", "stage read ..."):
        assert detail in plain, plain
    for bar in ("stage sweep", "sweep K=2..4", "Lloyd K=", "assign: blocks", "score: query"):
        assert bar in plain, plain
    assert "\x1b[" in term  # drawn live
    stable = [line for line in out.splitlines() if _STABLE.match(line)]
    assert stable == [line for line in r.stdout.splitlines() if _STABLE.match(line)], out
    assert len(stable) > 5 and "\x1b[" not in out  # the summary on stdout stays plain


def _flow_run_messages(config_uri: str) -> list[str]:
    """The log messages of the (latest) segmentation flow run of ``config_uri``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # this process's logs still in the batch queue (in-process runs)

    async def read():
        async with get_client() as c:
            runs = await c.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
            run = next(fr for fr in runs if fr.parameters.get("config_uri") == config_uri)
            flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            return [log.message for log in await c.read_logs(log_filter=flt)]

    return asyncio.run(read())


def _on_a_terminal(args: list[str], env: dict) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (160 columns); returns (code, stdout, terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed
                return
            if not data:
                return
            chunks.append(data)

    with subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
    ) as proc:
        os.close(slave)
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        out = proc.stdout.read().decode()
        proc.wait(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_flow_run_logs_hold_each_library_line_once(prefect_harness, cluster, job):
    """In-process flow run (no PREFECT_LOGGING_EXTRA_LOGGERS in this process: the flow
    attaches Prefect's API handler itself): the stage lines once each, and at DEBUG the
    per-K lines logged from the sweep's threads, once per K, attached to the run (a record
    without a run context would be a warning, an error here)."""
    import logging

    from flows.segmentation import segmentation

    lib = logging.getLogger("kmeans_dask")
    before = lib.level
    lib.setLevel(logging.DEBUG)
    try:
        overrides = {"cluster.address": cluster.scheduler_address, "knn.enabled": False}
        state = segmentation(str(job), overrides=overrides, return_state=True)
    finally:
        lib.setLevel(before)
    assert state.is_completed()
    messages = _flow_run_messages(str(job))
    stages = [s for s in STAGES if s != "score"]
    assert _once_per_stage("\n".join(messages), stages), messages
    per_k = collections.Counter(re.findall(r"sweep K=(\d):", "\n".join(messages)))
    assert per_k == {"2": 1, "3": 1, "4": 1}, messages
    assert not [h for h in lib.handlers if type(h).__name__ == "APILogHandler"]


class _Recorder:
    """A thread-safe progress reporter that records every step and its advances."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: list[dict] = []

    def start(self, description: str, total: int | None):
        step = {"description": description, "total": total, "advanced": 0, "status": [],
                "done": False, "thread": threading.current_thread().name}
        with self.lock:
            self.steps.append(step)
        recorder = self

        class Task:
            def advance(self, n: int = 1, *, status: str | None = None) -> None:
                with recorder.lock:
                    step["advanced"] += n
                    if status is not None:
                        step["status"].append(status)

            def done(self) -> None:
                with recorder.lock:
                    step["done"] = True

        return Task()

    def named(self, prefix: str) -> list[dict]:
        return [s for s in self.steps if s["description"].startswith(prefix)]


def test_progress_hook_counts_the_sweep_and_lloyd(client):
    """A real sweep on the LocalCluster reports K done of N, and every Lloyd run its
    iterations (from the sweep's threads, through the caller's context); nothing is
    reported outside the ``reporting`` block or to another thread's context."""
    import dask.array as da
    from sklearn.datasets import make_blobs

    from kmeans_dask import KMeans, sweep_k

    X, _ = make_blobs(3000, n_features=4, centers=3, random_state=0)
    Xd = da.from_array(X, chunks=1000)
    rec = _Recorder()
    outside = _Recorder()
    with progress.reporting(rec):
        assert progress.current() is rec
        other = threading.Thread(target=lambda: KMeans(2, random_state=0).fit(X))
        other.start()  # a thread of its own context: reports to the default (nothing)
        result = sweep_k(Xd, [2, 3, 4], silhouette_sample_size=300, random_state=0)
        other.join()
    assert progress.current() is progress.NULL
    with progress.reporting(outside):
        pass
    (sweep,) = rec.named("sweep K=")
    assert sweep["total"] == 3 and sweep["advanced"] == 3 and sweep["done"]
    assert sorted(sweep["status"]) == ["K=2 done", "K=3 done", "K=4 done"]
    n_iter = dict(zip(result.table.k, result.table.n_iter, strict=True))
    lloyd = {int(s["description"].split("=")[1]): s for s in rec.named("Lloyd K=")}
    assert sorted(lloyd) == [2, 3, 4] and len(rec.named("Lloyd K=")) == 3
    for k, step in lloyd.items():
        assert step["advanced"] == n_iter[k] and step["done"], step
        assert step["thread"].startswith("sweep")
        assert all(s.startswith("inertia ") for s in step["status"])
    assert len(rec.named("sweep: silhouettes")) == 1
    assert all(s["done"] for s in rec.steps) and not outside.steps
    assert np.isfinite(result.table.inertia).all()


def test_quiet_defaults_leave_the_users_settings_alone():
    from kmeans_dask.console import quiet_defaults

    quiet = quiet_defaults(False, {})
    assert quiet["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"  # no telemetry, no ERROR
    assert int(quiet["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) > 20
    assert quiet["PREFECT_LOGGING_EXTRA_LOGGERS"] == "kmeans_dask"
    assert quiet["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "WARNING"
    assert quiet["DASK_LOGGING__DISTRIBUTED"] == "warning"
    verbose = quiet_defaults(True, {"PREFECT_LOGGING_EXTRA_LOGGERS": "mine, other"})
    assert verbose["PREFECT_LOGGING_EXTRA_LOGGERS"] == "mine,other,kmeans_dask"
    assert "DASK_LOGGING__DISTRIBUTED" not in verbose
    assert "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in verbose
    serving = quiet_defaults(False, {}, prefect_console=True)  # serve: Prefect's run lines
    assert "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in serving
    assert serving["DASK_LOGGING__DISTRIBUTED"] == "warning"
    mine = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "true",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "kmeans_dask",
        "DASK_LOGGING__DISTRIBUTED": "info",
    }
    assert set(quiet_defaults(False, mine)) == {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW",
    }


def test_a_command_run_in_process_leaves_no_handler_behind(capsys):
    """``main`` (as a test or a notebook calls it) removes its handler afterwards and restores
    the library logger: no later record is written to a stream that has since been closed."""
    import logging

    from kmeans_dask import cli

    log = logging.getLogger("kmeans_dask")
    before = (list(log.handlers), log.level, log.propagate)
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert cli.main(["validate", str(demo)]) == 0
    assert "demo-segments" in capsys.readouterr().out
    assert (list(log.handlers), log.level, log.propagate) == before
