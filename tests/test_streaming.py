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


def test_plan_units_balances_the_blocks():
    # 16 files of 61 MiB, 256 MiB blocks: 4 blocks of 4 files (a greedy join gave 5, 5, 5, 1)
    groups = plan_units([61] * 16, [0] * 16, row_bytes=1 << 20, target=256 << 20, least=1)
    assert [len(g) for g in groups] == [4, 4, 4, 4]
    assert [i for g in groups for i in g] == list(range(16))
    # uneven units: the largest block is as small as consecutive runs allow
    sizes = [50, 10, 10, 10, 40, 30, 30, 5]
    groups = plan_units(sizes, [0] * 8, row_bytes=1, target=70, least=1)
    assert len(groups) == 3 and max(sum(sizes[i] for i in g) for g in groups) == 65


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


def test_streamed_minibatch_job_draws_its_pool_in_the_summary_pass(tmp_path, client, caplog):
    """A streamed mini-batch job draws the sample pool in its first read (no pass of its
    own for any K) and commits the same numbers as the persisted job, bit for bit."""
    import logging

    import dask
    from conftest import Store

    store = Store(str(tmp_path), None)
    df, _ = make_customers(12_000, seed=3)
    q, _ = make_customers(300, seed=4, offset=12_000)
    _write(store, "parquet", df, "in/customers", 5)
    _write(store, "parquet", q, "in/new", 1)
    out, passes = {}, {}
    for persist in ("always", "never"):
        data = _config(store, "parquet", persist, algorithm="minibatch", batch_size=256)
        caplog.clear()
        with (
            dask.config.set({"kmeans_dask.minibatch-pool-bytes": "96KiB"}),  # ~2k of 12k rows
            caplog.at_level(logging.DEBUG, logger="kmeans_dask.engine.minibatch"),
        ):
            res = run(parse_config(data), client=client)
        out[persist] = _outputs(store, res)
        passes[persist] = [
            int(r.getMessage().split("drawn in ")[1].split()[0])
            for r in caplog.records
            if "drawn in" in r.getMessage()
        ]
    assert len(passes["never"]) == 3 and set(passes["never"]) == {0}  # K = 2, 3, 4
    assert sorted(passes["always"]) == [0, 0, 1]  # one draw from the persisted blocks
    a, b = out["always"], out["never"]
    feats = [c for c in a["centroids"].columns if c != "segment"]
    assert np.array_equal(a["centroids"][feats].to_numpy(), b["centroids"][feats].to_numpy())
    pd.testing.assert_frame_equal(a["assignments"], b["assignments"], check_exact=True)
    cols = ["k", "inertia", "silhouette_sample", "silhouette_full_sq", "n_iter"]
    pd.testing.assert_frame_equal(a["sweep"][cols], b["sweep"][cols], check_exact=True)
