"""Persisted and streamed blocks: the memory plan, and the same job to the same numbers in
both modes (bit for bit: the same block recipes feed both), on Parquet (row counts from the
footers) and CSV (counted by a first streamed pass), on local disk and the S3 server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dask.utils import format_bytes

from kmeans_dask.engine.memory import WorkerMemory, plan_memory, state_bytes_per_row
from kmeans_dask.engine.plan import plan_units
from kmeans_dask.exceptions import MemoryBudgetError
from kmeans_dask.job.config import parse_config
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers
from kmeans_dask.job.pipeline import run

MiB = 2**20


# --------------------------------------------------------------------------- block plan


def test_plan_units_joins_consecutive_units_up_to_the_target_and_never_splits_one():
    rows = [100, 100, 100, 100, 100]
    assert plan_units(rows, [0] * 5, row_bytes=10, target=2000, least=1) == [[0, 1], [2, 3], [4]]
    # one unit larger than the target stays whole
    assert plan_units([1000, 10], [0, 0], row_bytes=10, target=500, least=1) == [[0], [1]]
    # unknown rows: the stored bytes size the blocks
    assert plan_units([None] * 4, [300] * 4, row_bytes=8, target=600, least=1) == [
        [0, 1],
        [2, 3],
    ]


def test_plan_units_splits_runs_to_reach_the_least_number_of_blocks_by_bytes():
    groups = plan_units([10, 10, 10, 10, 40], [0] * 5, row_bytes=1, target=10**9, least=2)
    assert groups == [[0, 1, 2, 3], [4]]  # halves by bytes, not by unit count
    assert plan_units([10], [0], row_bytes=1, target=10**9, least=4) == [[0]]


# --------------------------------------------------------------------------- memory plan


def _workers(n: int, limit: int, in_use: int = 0, threads: int = 1) -> list[WorkerMemory]:
    return [WorkerMemory(f"w{i}", limit, in_use, threads) for i in range(n)]


def test_memory_plan_persists_what_fits_and_streams_the_rest():
    ws = _workers(2, 1000 * MiB, in_use=100 * MiB)  # budget 2 x (600 - 100) MiB
    small = plan_memory(ws, n_rows=1_000_000, row_bytes=256, block_bytes=32 * MiB, n_labellings=1)
    assert small.persist and small.budget_bytes == 1000 * MiB
    big = plan_memory(ws, n_rows=8_000_000, row_bytes=256, block_bytes=32 * MiB, n_labellings=1)
    assert not big.persist
    assert big.data_bytes == 8_000_000 * 256
    assert big.state_bytes == 8_000_000 * state_bytes_per_row(1)
    assert "streamed" in big.describe()
    never = plan_memory(
        ws, n_rows=10, row_bytes=8, block_bytes=80, n_labellings=1, persist="never"
    )
    assert not never.persist


def test_memory_plan_always_that_does_not_fit_names_both_numbers_and_the_options():
    ws = _workers(2, 400 * MiB)
    with pytest.raises(MemoryBudgetError) as err:
        plan_memory(
            ws,
            n_rows=4_000_000,
            row_bytes=256,
            block_bytes=16 * MiB,
            n_labellings=1,
            persist="always",
        )
    msg = str(err.value)
    assert "kmeans.persist=always" in msg
    needed = 4_000_000 * (256 + state_bytes_per_row(1))  # data + per-row results
    assert f"needs {format_bytes(needed)}" in msg
    assert "budget is 480.00 MiB" in msg  # 2 x 400 MiB x 0.6
    assert "kmeans.persist: auto" in msg and "cluster.memory_limit" in msg


def test_memory_plan_fails_when_even_one_block_per_thread_does_not_fit():
    ws = _workers(2, 300 * MiB, in_use=150 * MiB, threads=2)
    with pytest.raises(MemoryBudgetError, match=r"cannot even be streamed.*kmeans\.block_bytes"):
        plan_memory(ws, n_rows=10**6, row_bytes=256, block_bytes=64 * MiB, n_labellings=1)


# --------------------------------------------------------------------------- the job


def _config(store, fmt: str, persist: str, **kmeans) -> dict:
    return {
        "name": f"stream-{persist}",
        "input": {
            "uri": store.uri("in/customers"),
            "format": fmt,
            "id_column": "customer_id",
            "columns": DEMO_FEATURES,
            "storage_options": store.options or {},
        },
        "kmeans": {
            "k": "auto",
            "k_min": 2,
            "k_max": 4,
            "persist": persist,
            "block_bytes": "128KiB",  # several blocks of several partitions each
            **kmeans,
        },
        "metrics": {"silhouette_sample_size": 800},
        "knn": {
            "enabled": True,
            "n_neighbors": 5,
            "query": {
                "uri": store.uri("in/new"),
                "format": fmt,
                "id_column": "customer_id",
                "storage_options": store.options or {},
            },
        },
        "output": {"uri": store.uri(f"out-{persist}"), "storage_options": store.options or {}},
    }


def _write(store, fmt: str, df: pd.DataFrame, rel: str, parts: int) -> None:
    df = df.drop(columns=[c for c in ("region",) if c in df.columns])
    bounds = np.linspace(0, len(df), parts + 1).astype(int)
    for i in range(parts):
        piece = df.iloc[bounds[i] : bounds[i + 1]]
        if fmt == "csv":
            store.write_csv(f"{rel}/part-{i:03d}.csv", piece)
        else:  # several row groups per file
            store.write_parquet(f"{rel}/part-{i:03d}.parquet", piece, row_group_size=997)


def _outputs(store, res) -> dict:
    uri = res.results_uri
    fs = store.fs
    manifest = json.loads(fs.cat_file(f"{uri}/manifest.json"))
    return {
        "centroids": store.read_folder(uri, "model/centroids.parquet"),
        "assignments": store.read_folder(uri, "assignments"),
        "scores": store.read_folder(uri, "scores"),
        "sweep": store.read_folder(uri, "sweep.parquet"),
        "manifest": manifest,
    }


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_streamed_and_persisted_runs_give_the_same_numbers(store, client, fmt):
    df, _ = make_customers(12_000, seed=3)
    q, _ = make_customers(700, seed=4, offset=12_000, outliers=0.02)
    _write(store, fmt, df, "in/customers", 9)
    _write(store, fmt, q, "in/new", 2)
    out = {}
    for persist in ("always", "never"):
        res = run(parse_config(_config(store, fmt, persist)), client=client)
        out[persist] = _outputs(store, res)
        assert out[persist]["manifest"]["memory"]["mode"] == (
            "persist" if persist == "always" else "stream"
        )
    a, b = out["always"], out["never"]
    feats = [f"{c}" for c in a["centroids"].columns if c != "segment"]
    # bit for bit: the same blocks, the same seeds, the same order of every reduction
    assert np.array_equal(a["centroids"][feats].to_numpy(), b["centroids"][feats].to_numpy())
    pd.testing.assert_frame_equal(a["assignments"], b["assignments"], check_exact=True)
    pd.testing.assert_frame_equal(a["scores"], b["scores"], check_exact=True)
    cols = ["k", "inertia", "silhouette_sample", "silhouette_full_sq", "n_iter"]
    pd.testing.assert_frame_equal(a["sweep"][cols], b["sweep"][cols], check_exact=True)
    # one assignment file per input partition, every row once, with its own id
    assert len(a["assignments"]) == len(df)
    assert a["assignments"]["customer_id"].tolist() == df["customer_id"].tolist()
    assert a["manifest"]["k"] == b["manifest"]["k"]


def test_persist_always_beyond_the_budget_fails_before_holding_anything(tmp_path, client):
    from conftest import Store

    from kmeans_dask.job.pipeline import Stages

    store = Store(str(tmp_path), None)
    df, _ = make_customers(3000, seed=5)
    q, _ = make_customers(100, seed=6, offset=3000)
    _write(store, "parquet", df, "in/customers", 2)
    _write(store, "parquet", q, "in/new", 1)
    data = _config(store, "parquet", "always", memory_fraction=0.0001)
    stages = Stages()
    before = {k for keys in client.has_what().values() for k in keys}
    with pytest.raises(MemoryBudgetError, match=r"kmeans\.persist=always"):
        run(parse_config(data), client=client, stages=stages)
    assert "read" not in stages.timings  # failed inside the read stage, before any fit
    after = {k for keys in client.has_what().values() for k in keys}
    assert after <= before  # nothing of this run left on the workers


# --------------------------------------------------------------------------- beyond memory

LIMIT = 600 * MiB  # one worker; its process alone takes ~300 MiB (Python, Dask, numba, Arrow)
N_FEATURES = 64


def _write_big(folder, n_files: int, rows: int) -> None:
    """``n_files`` Parquet files of ``rows`` x 64 float64 (4 shifted blobs): one random tile
    per blob shifted per file, so that writing 2.4 GB takes seconds, not minutes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    centres = rng.normal(scale=6.0, size=(4, N_FEATURES))
    tile = rng.normal(size=(rows, N_FEATURES))
    labels = rng.integers(0, 4, rows)
    folder.mkdir()
    for i in range(n_files):
        X = tile + centres[labels] + 0.01 * i
        table = pa.table({f"f{j}": X[:, j] for j in range(N_FEATURES)})
        # two row groups per file: 8 MiB blocks split the 16 MiB files
        pq.write_table(
            table, folder / f"part-{i:04d}.parquet", compression="none", row_group_size=rows // 2
        )


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
    """2.4 GB of features against one worker limited to 600 MiB: the plan streams (auto),
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
    persisted = run(parse_config(config("out-persisted")), client=client)

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
