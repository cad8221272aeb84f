"""The Prefect flow: real flow runs (Prefect's test harness) on the LocalCluster and S3."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from kmeans_dask.job.config import parse_config
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers
from kmeans_dask.job.pipeline import run


@pytest.fixture
def s3_store(s3):
    from conftest import Store

    return Store("s3://test-bucket/flow", s3)


def test_flow_and_plain_pipeline_give_identical_results(
    prefect_harness, s3_store, _session_client, tmp_path
):
    from prefect.client.orchestration import get_client

    from flows.segmentation import segmentation

    store = s3_store
    df, _ = make_customers(3000, seed=5)
    q, _ = make_customers(300, seed=6, offset=3000)
    store.write_partitioned("in/customers", df, 3)
    store.write_partitioned("in/new", q, 1)
    data = {
        "name": "flow-test",
        "input": {
            "uri": store.uri("in/customers"),
            "id_column": "customer_id",
            "columns": DEMO_FEATURES,
            "storage_options": store.options,
        },
        "kmeans": {"k": "auto", "k_min": 3, "k_max": 6, "select": "elbow"},
        "metrics": {"silhouette_sample_size": 1000},
        "knn": {
            "enabled": True,
            "n_neighbors": 5,
            "query": {
                "uri": store.uri("in/new"),
                "id_column": "customer_id",
                "storage_options": store.options,
            },
        },
        "output": {"uri": store.uri("out-flow"), "storage_options": store.options},
        # the flow connects to the session's cluster by address, as a deployment would
        "cluster": {"address": _session_client.scheduler.address},
    }
    cfg_path = tmp_path / "flow.yaml"
    cfg_path.write_text(yaml.safe_dump(data))

    state = segmentation(str(cfg_path), overrides=None, force=False, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["k"] == 5 and not result["skipped"]

    # the same config without Prefect, written elsewhere
    plain_cfg = parse_config(
        {**data, "output": {"uri": store.uri("out-plain"), "storage_options": store.options}}
    )
    with _session_client.as_current():
        plain = run(plain_cfg, client=_session_client)
    assert plain.run_id == result["run_id"]  # same config + same data = same id
    assert plain.metrics == result["metrics"]
    for folder in ("assignments", "scores"):
        pd.testing.assert_frame_equal(
            store.read_folder(result["results_uri"], folder),
            store.read_folder(plain.results_uri, folder),
        )

    # the flow's tasks are the stages (coarse), and it published its artifacts
    import asyncio

    async def inspect():
        async with get_client() as c:
            runs = await c.read_task_runs()
            arts = await c.read_artifacts()
            return runs, arts

    runs, arts = asyncio.run(inspect())
    names = {
        r.name.rsplit("-", 1)[0] for r in runs if r.flow_run_id == state.state_details.flow_run_id
    }
    assert {"plan", "read", "sweep", "fit", "assign", "score", "model", "commit"} <= names
    assert len(names) < 20
    keys = {a.key for a in arts if a.flow_run_id == state.state_details.flow_run_id}
    assert {"segmentation-summary", "segmentation-sweep"} <= keys

    # a rerun of the flow is skipped
    again = segmentation(str(cfg_path))
    assert again["skipped"] and again["run_id"] == result["run_id"]


def test_cli_runs_the_flow_by_default(prefect_harness, tmp_path, capsys):
    """`kmeans-dask run CONFIG` goes through the Prefect flow (here the test harness's API)."""
    from kmeans_dask import cli

    df, _ = make_customers(1500, seed=8)
    (tmp_path / "in").mkdir()
    df.drop(columns="region").to_parquet(tmp_path / "in" / "a.parquet", index=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "cli-flow",
                "input": {
                    "uri": str(tmp_path / "in"),
                    "id_column": "customer_id",
                    "columns": DEMO_FEATURES,
                },
                "kmeans": {"k": 5},
                "output": {"uri": str(tmp_path / "out")},
                "cluster": {"n_workers": 1},
            }
        )
    )
    assert cli.main(["run", str(cfg), "--set", "kmeans.random_state=3"]) == 0
    out = capsys.readouterr().out
    assert "committed" in out and "K = 5 (fixed)" in out
    assert cli.main(["run", str(cfg), "--set", "kmeans.random_state=3"]) == 0
    assert "already committed: skipped" in capsys.readouterr().out


def _task_runs(flow_run_id) -> list:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as c:
            flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            return await c.read_task_runs(flow_run_filter=flt)

    return asyncio.run(read())


def test_a_missing_input_fails_at_once_without_retries(prefect_harness, tmp_path):
    """A deterministic error (here a missing input) is never retried: one plan attempt."""
    import time

    from flows.segmentation import segmentation
    from kmeans_dask.exceptions import DatasetError

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\ninput: {{uri: {tmp_path}/nowhere}}\noutput: {{uri: {tmp_path}/o}}\n")
    t0 = time.monotonic()
    state = segmentation(str(cfg), return_state=True)
    assert state.is_failed() and time.monotonic() - t0 < 30  # the first retry would wait 2 s
    with pytest.raises(DatasetError, match=r"nowhere does not exist"):
        state.result()
    runs = _task_runs(state.state_details.flow_run_id)
    assert [(r.name.rsplit("-", 1)[0], r.run_count) for r in runs] == [("plan", 1)]


def test_stages_retry_only_transient_failures(prefect_harness, monkeypatch):
    """Through Prefect's own retry machinery: a connection reset or an HTTP 503 SlowDown is
    retried; a data error, or access denied (a 403 under a StorageError), fails at once."""
    from botocore.exceptions import ClientError
    from prefect import flow

    import flows.segmentation as fs
    from kmeans_dask.exceptions import DatasetError, StorageError

    monkeypatch.setattr(fs, "BACKOFF", [0, 0, 0])

    def client_error(code: str, status: int) -> ClientError:
        response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {}}
        response["ResponseMetadata"]["HTTPStatusCode"] = status
        return ClientError(response, "GetObject")

    def storage_error(cause: Exception) -> StorageError:
        err = StorageError("reading s3://b/k: failed")
        err.__cause__ = cause
        return err

    @flow
    def one_stage(errors: list) -> int:
        calls = []

        def stage() -> int:
            calls.append(1)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
            return len(calls)

        try:
            fs._as_task("plan", stage, ())
        except Exception as exc:
            return -len(calls) if isinstance(exc, DatasetError | StorageError) else -99
        return len(calls)

    cases = [  # (errors raised by successive attempts, calls: +n succeeded, -n failed)
        ([ConnectionResetError("reset by peer")], 2),
        ([storage_error(client_error("SlowDown", 503)), TimeoutError("read timed out")], 3),
        ([storage_error(client_error("InternalError", 500))] * 3, 4),
        ([storage_error(client_error("SlowDown", 503))] * 4, -4),  # retries exhausted
        ([DatasetError("column 'x' not found")], -1),
        ([storage_error(client_error("AccessDenied", 403))], -1),
        ([storage_error(client_error("NoSuchBucket", 404))], -1),
    ]
    assert [one_stage(errors) for errors, _ in cases] == [calls for _, calls in cases]
