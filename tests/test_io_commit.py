"""The commit protocol, idempotent run ids and model files, local and over S3 (moto)."""

from __future__ import annotations

import json

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from kmeans_dask import KMeans, StandardScaler
from kmeans_dask.exceptions import StorageError
from kmeans_dask.io import (
    RunCommit,
    fingerprint,
    latest_run,
    load_model_documents,
    read_dataset,
    read_manifest,
    redact,
    run_id_for,
    write_frames,
)
from kmeans_dask.job import load_model
from kmeans_dask.job.segmentation_model import SegmentationModel, save_model

CONFIG = {"name": "seg", "kmeans": {"k": 3, "random_state": 0}, "input": {"columns": ["a", "b"]}}


def _listing(store, run_id):
    fs = store.fs
    fs.invalidate_cache()
    base = store.uri("out", run_id)
    return {
        p: (i["size"], i.get("ETag") or i.get("mtime"))
        for p, i in fs.find(base, detail=True).items()
    }


def _frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n)})


def _write_frame(frame, run, folder="assignments"):
    """Every partition of a dask DataFrame as one Parquet file, written by the workers."""
    return write_frames(list(frame.to_delayed(optimize_graph=True)), run, folder)


def _commit_run(store, run_id, frame):
    run = RunCommit(store.uri("out"), run_id, store.options)
    assert run.begin()
    with run.attempt():
        _write_frame(dd.from_pandas(frame, npartitions=3), run)
        run.write_json("model/model.json", {"k": 3})
        run.commit({"config": CONFIG})
    return run


def test_commit_writes_success_last_and_latest(store, backend):
    run = _commit_run(store, "seg-aaaa", _frame())
    assert run.is_committed()
    assert latest_run(store.uri("out"), store.options) == "seg-aaaa"
    manifest = run.manifest()
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(paths)
    assert [p for p in paths if p.startswith("assignments/")] == [
        f"assignments/part-{i:05d}.parquet" for i in range(3)
    ]
    assert sum(f.get("rows", 0) for f in manifest["files"] if f["path"].startswith("assign")) == 300
    # every listed file exists with its size; _SUCCESS is not in the manifest (written after)
    listing = {p.rsplit(run.run_id + "/", 1)[1]: v for p, v in _listing(store, run.run_id).items()}
    for f in manifest["files"]:
        assert listing[f["path"]][0] == f["size"]
    assert "_SUCCESS" in listing and "_SUCCESS" not in paths
    back = read_dataset(run.uri + "/assignments", storage_options=store.options).compute()
    pd.testing.assert_frame_equal(back.reset_index(drop=True), _frame(), check_dtype=False)


def _failing(df):
    if df["id"].iloc[0] >= 200:
        raise RuntimeError("disk full (simulated)")
    return df


def test_failure_midway_leaves_previous_run_intact(store, backend):
    good = _commit_run(store, "seg-good", _frame())
    before = _listing(store, "seg-good")
    run = RunCommit(store.uri("out"), "seg-next", store.options)
    assert run.begin()
    frame = dd.from_pandas(_frame(), npartitions=3).map_partitions(_failing, meta=_frame().iloc[:0])
    with pytest.raises(RuntimeError, match="disk full"), run.attempt():
        run.write_json("model/model.json", {"k": 3})
        _write_frame(frame, run)
        run.commit({})
    assert not run.is_committed()
    assert not store.fs.exists(run.path("_SUCCESS"))
    assert latest_run(store.uri("out"), store.options) == "seg-good"
    assert _listing(store, "seg-good") == before  # untouched
    assert good.is_committed()
    # a crashed attempt (no cleanup) leaves files; the next attempt removes them, then commits
    store.write_bytes("out/seg-next/assignments/part-00009.parquet", b"stale")
    run2 = RunCommit(store.uri("out"), "seg-next", store.options)
    assert run2.begin()
    store.fs.invalidate_cache()
    assert not store.fs.exists(run2.path("assignments/part-00009.parquet"))
    with run2.attempt():
        _write_frame(dd.from_pandas(_frame(), npartitions=2), run2)
        run2.commit({})
    assert run2.is_committed()
    assert latest_run(store.uri("out"), store.options) == "seg-next"
    assert not any("part-00009" in f["path"] for f in run2.manifest()["files"])


def test_committed_run_is_skipped_unless_forced(store):
    _commit_run(store, "seg-x", _frame())
    before = _listing(store, "seg-x")
    again = RunCommit(store.uri("out"), "seg-x", store.options)
    assert again.begin() is False
    assert _listing(store, "seg-x") == before  # nothing rewritten
    forced = RunCommit(store.uri("out"), "seg-x", store.options)
    assert forced.begin(force=True) is True
    assert not forced.is_committed()


def test_run_id_changes_with_input_file_or_config(store):
    for i in range(2):
        store.write_parquet(f"in/part-{i}.parquet", _frame(50, seed=i))
    fp = fingerprint(store.uri("in"), storage_options=store.options)
    rid = run_id_for(CONFIG, fp, name="seg")
    assert rid.startswith("seg-") and rid == run_id_for(json.loads(json.dumps(CONFIG)), fp, "seg")
    changed_cfg = {**CONFIG, "kmeans": {"k": 4, "random_state": 0}}
    assert run_id_for(changed_cfg, fp, "seg") != rid
    store.write_parquet("in/part-1.parquet", _frame(51, seed=5))
    fp2 = fingerprint(store.uri("in"), storage_options=store.options)
    assert run_id_for(CONFIG, fp2, "seg") != rid


def test_load_model_predicts_like_the_in_memory_model(store, backend):
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0], [10, 10], [0, 10]], dtype=float) * [1.0, 50.0]
    X = pd.DataFrame(
        np.concatenate([c + rng.normal(size=(200, 2)) for c in centres]), columns=["a", "b"]
    )
    scaler = StandardScaler().fit(X)
    km = KMeans(3, random_state=0).fit(scaler.transform(X))
    model = SegmentationModel(km, scaler, ["a", "b"], {"note": "test"})
    run = RunCommit(store.uri("out"), "seg-model", store.options)
    run.begin()
    with run.attempt():
        save_model(run, model)
        run.commit({})
    loaded = load_model(run.uri, store.options)
    Xn = pd.DataFrame(rng.normal(size=(500, 2)) * [5, 250] + [5, 250], columns=["b", "a"])
    np.testing.assert_array_equal(loaded.predict(Xn), model.predict(Xn))
    np.testing.assert_array_equal(loaded.predict(X), km.labels_.compute())
    np.testing.assert_allclose(loaded.kmeans.cluster_centers_, km.cluster_centers_)
    assert loaded.metadata == {"note": "test"}
    # files are JSON and Parquet, readable without this package
    doc = json.loads(store.fs.cat_file(run.path("model/scaler.json")))
    assert doc["kind"] == "standard" and len(doc["mean"]) == 2


def test_load_model_of_an_uncommitted_run_fails(store):
    run = RunCommit(store.uri("out"), "seg-partial", store.options)
    run.begin()
    run.write_json("model/model.json", {})
    with pytest.raises(StorageError, match=r"is not a committed run \(no _SUCCESS\)"):
        load_model(run.uri, store.options)


def test_redact_hides_credentials():
    opts = {"endpoint_url": "http://x", "key": "k", "secret": "s", "client_kwargs": {"token": "t"}}
    assert redact(opts) == {
        "endpoint_url": "http://x",
        "key": "***",
        "secret": "***",
        "client_kwargs": {"token": "***"},
    }


def test_load_model_documents_of_a_run_without_model_files_fails(store):
    run = RunCommit(store.uri("out"), "seg-nomodel", store.options)
    run.begin()
    with run.attempt():
        run.commit({})
    with pytest.raises(StorageError, match="model file missing in"):
        load_model_documents(run.uri, store.options)


def test_a_failed_write_is_a_storage_error_naming_the_file(tmp_path):
    (tmp_path / "out").write_text("a file where the output folder should be")
    run = RunCommit(str(tmp_path / "out"), "seg-blocked")
    with pytest.raises(StorageError, match=r"cannot write .*seg-blocked/model/model\.json"):
        run.write_json("model/model.json", {})
    with pytest.raises(StorageError, match=r"cannot write .*seg-blocked/sweep\.parquet"):
        run.write_table("sweep.parquet", _frame(5))


def test_read_manifest_of_a_run_or_of_the_latest_run(store):
    run = _commit_run(store, "seg-shown", _frame())
    by_run = read_manifest(run.uri, store.options)
    assert by_run["run_id"] == "seg-shown"
    assert read_manifest(store.uri("out"), store.options) == by_run  # LATEST
    with pytest.raises(StorageError, match="is not a run folder and has no LATEST"):
        read_manifest(store.uri("nothing-here"), store.options)
