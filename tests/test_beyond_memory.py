"""Data beyond the workers' memory: a dataset four times one worker's limit streams to the
persisted result with no pause or restart, and a worker stuck paused for memory stops the job
with the reason. (Apart from test_streaming.py so that a parallel run can start it early.)"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dask.utils import format_bytes

from kmeans_dask.exceptions import MemoryBudgetError
from kmeans_dask.job.config import parse_config
from kmeans_dask.job.pipeline import run

MiB = 2**20

# --------------------------------------------------------------------------- beyond memory

# one worker; its process alone takes ~410-430 MiB once the job's modules are loaded
# (Python, Dask, numba, Arrow): at 600 MiB, distributed's pause threshold (80%) left ~50 MiB
# above that, and a brief allocator spike in a loaded CI run paused the worker (483 MiB)
LIMIT = 700 * MiB
N_FEATURES = 64


def _write_big(folder, n_files: int, rows: int, distinct: int = 8) -> None:
    """``n_files`` Parquet files of ``rows`` x 64 float64 (4 blobs): ``distinct`` files
    written (one random tile per blob, shifted per file), the rest hard links to them in
    turn, so that 2.8 GB of input takes a second to make instead of 15-40 s here (what the
    job reads, holds and streams is the same 2.8 GB either way)."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    centres = rng.normal(scale=6.0, size=(4, N_FEATURES))
    tile = rng.normal(size=(rows, N_FEATURES))
    labels = rng.integers(0, 4, rows)
    folder.mkdir()
    for i in range(n_files):
        path = folder / f"part-{i:04d}.parquet"
        if i >= distinct:
            os.link(folder / f"part-{i % distinct:04d}.parquet", path)
            continue
        X = tile + centres[labels] + 0.01 * i
        table = pa.table({f"f{j}": X[:, j] for j in range(N_FEATURES)})
        # two row groups per file: 8 MiB blocks split the 16 MiB files
        pq.write_table(table, path, compression="none", row_group_size=rows // 2)


def _memory_events(client) -> list:
    """Pauses of any worker and restarts or removals of workers, from the scheduler."""
    events = []
    for topic, evs in client.get_events().items():
        for _, e in evs:
            if not isinstance(e, dict):
                continue
            if e.get("action") == "worker-status-change" and e.get("status") != "running":
                events.append((topic, e))
            if e.get("action") in ("remove-worker", "worker-restart-memory"):
                events.append((topic, e))
    return events


@pytest.mark.slow
def test_data_four_times_the_workers_memory_streams_to_the_persisted_result(tmp_path, client):
    """2.8 GB of features against one worker limited to 700 MiB: the plan streams (auto),
    no worker pauses or restarts, the worker stays under distributed's pause threshold, and
    the result equals the persisted run's on the (big-memory) session cluster, bit for bit."""
    import threading

    from distributed import Client, LocalCluster

    rows = 16 * MiB // (N_FEATURES * 8)  # 16 MiB files
    n_files = 4 * LIMIT // (rows * N_FEATURES * 8)
    _write_big(tmp_path / "in", n_files, rows)
    assert n_files * rows * N_FEATURES * 8 >= 4 * LIMIT

    def config(out: str) -> dict:
        return {
            "name": "beyond-memory",
            "input": {"uri": str(tmp_path / "in")},
            "kmeans": {
                "k": 4,
                "init": "random",
                "max_iter": 2,
                "tol": 0.0,
                "block_bytes": "8MiB",
                "memory_fraction": 0.75,
            },
            "output": {"uri": str(tmp_path / out)},
        }

    # the persisted run first, on the big-memory session cluster: it also fills numba's
    # on-disk cache, so the small worker loads the compiled kernels instead of compiling
    # them (compiling is not the streamed job's memory; with a cold cache and a busy
    # machine the worker peaked at 510 MiB, with a warm one 486 MiB, of its 560 MiB pause
    # threshold; one CI run paused it)
    persisted = run(parse_config(config("out-persisted")), client=client)
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            memory_limit=LIMIT,
            dashboard_address=":0",
        ) as small,
        Client(small, set_as_default=False) as small_client,
    ):
        peak = [0]
        stop = threading.Event()

        def watch() -> None:  # the worker's process memory, sampled
            while not stop.is_set():
                for w in small_client.scheduler_info()["workers"].values():
                    peak[0] = max(peak[0], w["metrics"]["memory"])
                stop.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            streamed = run(parse_config(config("out-streamed")), client=small_client)
        finally:
            stop.set()
            watcher.join()
        assert _memory_events(small_client) == []
    assert peak[0] < 0.8 * LIMIT, f"worker peaked at {format_bytes(peak[0])}"

    store_s = _outputs_local(streamed.results_uri)
    store_p = _outputs_local(persisted.results_uri)
    assert store_s["manifest"]["memory"]["mode"] == "stream"
    assert store_p["manifest"]["memory"]["mode"] == "persist"
    pd.testing.assert_frame_equal(store_s["centroids"], store_p["centroids"], check_exact=True)
    pd.testing.assert_frame_equal(store_s["assignments"], store_p["assignments"], check_exact=True)
    assert len(store_s["assignments"]) == n_files * rows


def _outputs_local(uri: str) -> dict:
    from pathlib import Path

    base = Path(uri)
    parts = sorted((base / "assignments").glob("*.parquet"))
    return {
        "manifest": json.loads((base / "manifest.json").read_text()),
        "centroids": pd.read_parquet(base / "model" / "centroids.parquet"),
        "assignments": pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True),
    }


def _fill_to(fraction: float, limit: int):
    """An array that brings this worker process to ``fraction`` of ``limit`` (kept as a
    result: managed memory)."""
    import psutil

    rss = psutil.Process().memory_info().rss
    return np.ones(max(0, int(fraction * limit) - rss) // 8)


def _inc(x: int) -> int:
    return x + 1


def test_a_worker_stuck_paused_for_memory_fails_the_wait_with_the_reason():
    """Nothing may sit paused without an error: a worker held above distributed's pause
    threshold (80% of its limit, spilling off) stops the job with a MemoryBudgetError."""
    import dask
    from distributed import Client, LocalCluster

    from kmeans_dask.engine.memory import PauseWatch

    no_spill = {
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.monitor-interval": "50ms",
    }
    with (
        dask.config.set(no_spill),
        LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit="400MiB", dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        # past the 80% pause threshold, below the 95% restart one
        held = c.submit(_fill_to, 0.87, 400 * MiB)
        held.result()
        waiting = c.submit(_inc, 1)
        with PauseWatch(c, timeout=2.0, interval=0.2) as watch:
            with pytest.raises(BaseException) as err:  # distributed cancels the wait
                waiting.result(timeout=60)
        assert "paused for memory" in str(err.value)
        with pytest.raises(MemoryBudgetError, match=r"has been paused for memory for 2 s"):
            watch.check()
        assert "cluster.memory_limit" in watch.reason
