"""The segmentation job end to end: real LocalCluster, local disk and the moto S3 server."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from kmeans_dask.io import latest_run
from kmeans_dask.job.config import apply_overrides, parse_config
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers
from kmeans_dask.job.pipeline import run

N, NQ = 4000, 600


@pytest.fixture
def job(store):
    """Customers (5 true segments) and new customers on the store, and a config for them."""
    df, truth = make_customers(N, seed=1)
    q, _ = make_customers(NQ, seed=2, offset=N, outliers=0.02)
    store.write_partitioned("in/customers", df, 4)
    store.write_partitioned("in/new", q, 2)
    # explicit credentials (moto accepts any): they must never reach the manifest or a log
    opts = (
        {**store.options, "key": "kmeans-dask-test-key", "secret": "SECRET-VALUE-42"}
        if (store.options)
        else {}
    )
    data = {
        "name": "e2e",
        "input": {
            "uri": store.uri("in/customers"),
            "id_column": "customer_id",
            "columns": DEMO_FEATURES,
            "storage_options": opts,
        },
        "kmeans": {"k": "auto", "k_min": 2, "k_max": 7, "random_state": 0},
        "metrics": {"silhouette_sample_size": 1500},
        "knn": {
            "enabled": True,
            "n_neighbors": 7,
            "query": {
                "uri": store.uri("in/new"),
                "id_column": "customer_id",
                "storage_options": opts,
            },
        },
        "output": {"uri": store.uri("out"), "storage_options": opts},
    }
    return store, data, df, truth, q


def _files(store, run_uri):
    fs = store.fs
    fs.invalidate_cache()
    base = run_uri.rstrip("/")
    found = fs.find(base, detail=True)
    prefix = base.split("://", 1)[-1]
    return {
        p[len(prefix) + 1 :]: (i["size"], i.get("ETag") or i.get("mtime")) for p, i in found.items()
    }


def test_run_writes_the_layout_and_is_idempotent(job, client):
    store, data, df, truth, q = job
    config = parse_config(data)
    res = run(config, client=client)
    assert not res.skipped and res.k == 5, res  # the generated truth
    files = _files(store, res.results_uri)
    expected = {
        "manifest.json",
        "sweep.parquet",
        "elbow.png",
        "silhouette.png",
        "model/centroids.parquet",
        "model/scaler.json",
        "model/model.json",
        "profiles.parquet",
        "profiles.md",
        "profiles.png",
    }
    assert expected <= set(files)
    assert sorted(f for f in files if f.startswith("assignments/")) == [
        f"assignments/part-{i:05d}.parquet"
        for i in range(4)  # one per input partition
    ]
    assert sorted(f for f in files if f.startswith("scores/")) == [
        f"scores/part-{i:05d}.parquet" for i in range(2)
    ]
    manifest = json.loads(store.fs.cat_file(f"{res.results_uri}/manifest.json"))
    listed = {f["path"] for f in manifest["files"]}
    assert set(files) - {"manifest.json"} == listed  # every other file listed
    # the run folder holds the commit pointer, naming this attempt, and nothing else
    run_files = _files(store, res.run_uri)
    assert {f.split("/")[0] for f in run_files} == {"_SUCCESS", manifest["attempt"]}
    assert res.results_uri.endswith(f"{res.run_id}/{manifest['attempt']}")
    assert manifest["k"] == 5 and manifest["inputs"]["input"] and manifest["versions"]["dask"]
    assert "SECRET-VALUE-42" not in json.dumps(manifest)
    if store.options:
        assert manifest["config"]["input"]["storage_options"]["secret"] == "***"
    assert latest_run(data["output"]["uri"], store.options) == res.run_id

    # every input row exactly once, segments matching the truth
    assign = store.read_folder(res.results_uri, "assignments")
    assert list(assign.columns) == ["customer_id", "segment", "distance_to_centroid"]
    assert len(assign) == N and assign.customer_id.is_unique
    from sklearn.metrics import adjusted_rand_score

    merged = df.assign(truth=truth).merge(assign, on="customer_id")
    assert adjusted_rand_score(merged.truth, merged.segment) == 1.0
    # every query row scored once; the planted outliers have the largest k-th distances
    scores = store.read_folder(res.results_uri, "scores")
    assert set(scores.customer_id) == set(q.customer_id) and len(scores) == NQ
    assert {"knn_label", "vote_share", "kth_distance", "nearest_centroid"} <= set(scores.columns)
    n_out = round(0.02 * NQ)
    far = set(scores.nlargest(n_out, "kth_distance").customer_id)
    planted = set(q.customer_id[q[DEMO_FEATURES[0]] > 100])
    assert len(far & planted) >= 0.9 * n_out

    # the same config again: skipped, nothing rewritten
    again = run(parse_config(data), client=client)
    assert again.skipped and again.run_id == res.run_id and again.k == 5
    assert again.results_uri == res.results_uri
    assert again.profiles == res.profiles and "## Segment profiles" in again.profiles
    assert _files(store, res.run_uri) == run_files
    assert latest_run(data["output"]["uri"], store.options) == res.run_id  # left alone

    # force: recomputed, same numbers
    forced = run(parse_config(data), force=True, client=client)
    assert not forced.skipped and forced.run_id == res.run_id
    assert forced.results_uri != res.results_uri  # a new attempt, the old one removed
    assert set(_files(store, res.run_uri)) & set(run_files) == {"_SUCCESS"}
    pd.testing.assert_frame_equal(store.read_folder(forced.results_uri, "assignments"), assign)
    assert forced.metrics == res.metrics
    # continuity: the forced rerun follows the committed run it replaces (drift.json read
    # its assignments from the store, joined on the id column on the workers)
    assert res.drift["previous_run"] is None
    assert forced.drift["previous_run"] == res.run_id
    assert forced.drift["adjusted_rand_index"] == 1.0 and forced.drift["flagged"] == {}

    # a changed setting: a new run next to the old one
    changed = run(parse_config(apply_overrides(data, ["kmeans.k=4"])), client=client)
    assert changed.run_id != res.run_id and changed.k == 4
    assert latest_run(data["output"]["uri"], store.options) == changed.run_id
    # rerunning the older config skips and leaves LATEST on the newer run
    assert run(parse_config(data), client=client).skipped
    assert latest_run(data["output"]["uri"], store.options) == changed.run_id
    assert _files(store, res.run_uri) != {} and "_SUCCESS" in _files(store, res.run_uri)


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "kmeans_dask.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
    )


def test_cli_config_errors_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: x\ninput: {{uri: {tmp_path}/in}}\noutput: {{uri: {out}}}\n"
        "kmeans: {select: knee, k: auto}\nbogus: 1\n"
    )
    r = _cli("run", str(cfg), "--no-prefect")
    assert r.returncode == 2
    assert "kmeans.select: must be one of silhouette, elbow; got 'knee'" in r.stderr
    assert "bogus: unknown key" in r.stderr
    assert not out.exists()
    r = _cli("validate", str(cfg), "--set", "kmeans.select=elbow", "--set", "bogus=")
    assert r.returncode == 2 and "bogus: unknown key" in r.stderr


def test_cli_missing_column_exits_2_names_it_and_writes_nothing(tmp_path):
    df, _ = make_customers(200, seed=3)
    (tmp_path / "in").mkdir()
    df.drop(columns="region").to_parquet(tmp_path / "in" / "a.parquet", index=False)
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: x\ninput: {{uri: {tmp_path}/in, columns: [age, income, wealth]}}\n"
        f"output: {{uri: {out}}}\nkmeans: {{k: 3}}\ncluster: {{n_workers: 1}}\n"
    )
    r = _cli("run", str(cfg), "--no-prefect")
    assert r.returncode == 2, r.stderr
    assert "column(s) ['wealth'] not found in " + str(tmp_path / "in") in r.stderr
    assert not out.exists()
    ok = _cli("validate", str(cfg))
    assert ok.returncode == 0 and '"k": 3' in ok.stdout
