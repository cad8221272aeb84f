"""The commit protocol, idempotent run ids and model files, local and over S3 (moto)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pytest
from fsspec.implementations.local import LocalFileSystem

from kmeans_dask import KMeans, StandardScaler
from kmeans_dask.exceptions import StorageError
from kmeans_dask.io import (
    LeaseHeldError,
    RunCommit,
    fingerprint,
    latest_run,
    load_model_documents,
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


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped, so no such pid now)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert proc.pid != os.getpid()
    return proc.pid


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


def _failing(df):
    if df["id"].iloc[0] >= 200:
        raise RuntimeError("disk full (simulated)")
    return df


def _committed_attempt(store, run_id):
    pointer = json.loads(store.fs.cat_file(store.uri("out", run_id, "_SUCCESS")))
    return pointer["attempt"]


def test_commit_writes_success_last_and_latest(store, backend):
    run = _commit_run(store, "seg-aaaa", _frame())
    assert run.is_committed()
    assert latest_run(store.uri("out"), store.options) == "seg-aaaa"
    manifest = run.manifest()
    assert manifest["attempt"] == run.attempt_path.rsplit("/", 1)[1]
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(paths)
    assert [p for p in paths if p.startswith("assignments/")] == [
        f"assignments/part-{i:05d}.parquet" for i in range(3)
    ]
    assert sum(f.get("rows", 0) for f in manifest["files"] if f["path"].startswith("assign")) == 300
    # the pointer names the attempt; every listed file exists in it with its size
    attempt = _committed_attempt(store, "seg-aaaa")
    assert run.committed_uri().endswith(f"seg-aaaa/{attempt}")
    listing = _listing(store, "seg-aaaa")
    files = {p.split(f"seg-aaaa/{attempt}/", 1)[1]: v for p, v in listing.items() if attempt in p}
    for f in manifest["files"]:
        assert files[f["path"]][0] == f["size"]
    assert set(files) == {*paths, "manifest.json"}
    # outside the attempt: only the pointer (the lease is gone once committed)
    outside = {p.rsplit("seg-aaaa/", 1)[1] for p in listing if attempt not in p}
    assert outside == {"_SUCCESS"}


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
    store.fs.invalidate_cache()
    assert not store.fs.exists(run.attempt_path)  # the failed attempt removed its own files
    assert latest_run(store.uri("out"), store.options) == "seg-good"
    assert _listing(store, "seg-good") == before  # untouched
    assert good.is_committed()
    # a crashed attempt (no cleanup) leaves files; the next lease holder removes them
    store.write_bytes("out/seg-next/attempt-crashed/assignments/part-00009.parquet", b"stale")
    run2 = RunCommit(store.uri("out"), "seg-next", store.options)
    assert run2.begin()
    store.fs.invalidate_cache()
    assert not store.fs.exists(store.uri("out", "seg-next", "attempt-crashed"))
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
    assert _listing(store, "seg-x") == before  # nothing rewritten, no lease left
    forced = RunCommit(store.uri("out"), "seg-x", store.options)
    assert forced.begin(force=True) is True
    with forced.attempt():
        forced.write_json("model/model.json", {"k": 4})
        # the committed attempt stays committed and readable while the new one is written
        assert forced.is_committed()
        assert read_manifest(forced.uri, store.options)["config"] == CONFIG
        assert {p for p in before} <= set(_listing(store, "seg-x"))
        forced.commit({"config": {"forced": True}})
    assert read_manifest(forced.uri, store.options)["config"] == {"forced": True}
    # the replaced attempt is removed after the switch
    listing = _listing(store, "seg-x")
    old_files = {p for p in before if not p.endswith("/_SUCCESS")}
    assert not old_files & set(listing)
    new = forced.attempt_path.rsplit("/", 1)[1]
    assert all(new in p or p.endswith("_SUCCESS") for p in listing)


def test_forced_rerun_failing_keeps_the_committed_run(store):
    _commit_run(store, "seg-y", _frame())
    before = _listing(store, "seg-y")
    forced = RunCommit(store.uri("out"), "seg-y", store.options)
    assert forced.begin(force=True)
    with pytest.raises(RuntimeError, match="score stage"), forced.attempt():
        forced.write_json("model/model.json", {"k": 4})
        raise RuntimeError("score stage failed (simulated)")
    assert _listing(store, "seg-y") == before
    assert read_manifest(forced.uri, store.options)["config"] == CONFIG


def test_one_writer_per_run_id(store):
    first = RunCommit(store.uri("out"), "seg-c", store.options)
    assert first.begin()
    second = RunCommit(store.uri("out"), "seg-c", store.options)
    with pytest.raises(LeaseHeldError, match="being written by another attempt"):
        second.begin()
    with first.attempt():
        first.write_json("model/model.json", {})
        first.commit({"config": CONFIG})
    # once the first committed, the second finds the result and skips
    assert RunCommit(store.uri("out"), "seg-c", store.options).begin() is False


def test_a_dead_or_expired_lease_is_taken_over(store):
    run_path = store.uri("out", "seg-d")
    dead = {"generation": 1, "attempt": "gone", "host": socket.gethostname(),
            "pid": _dead_pid(), "expires_at": time.time() + 3600}
    store.write_bytes("out/seg-d/_LEASE.00000001", json.dumps(dead).encode())
    run = RunCommit(store.uri("out"), "seg-d", store.options)
    assert run.begin()  # same host, process gone: taken over at once
    run.attempt().__enter__()
    run._lease.release()
    elsewhere = {"generation": 5, "attempt": "other", "host": "another-host.invalid",
                 "pid": 1, "expires_at": time.time() + 3600}
    store.write_bytes("out/seg-d/_LEASE.00000005", json.dumps(elsewhere).encode())
    with pytest.raises(LeaseHeldError, match=r"another-host\.invalid"):
        RunCommit(store.uri("out"), "seg-d", store.options).begin()
    expired = {**elsewhere, "expires_at": time.time() - 1}
    store.write_bytes("out/seg-d/_LEASE.00000005", json.dumps(expired).encode())
    late = RunCommit(store.uri("out"), "seg-d", store.options)
    assert late.begin()
    assert late._lease.held.generation == 6
    late._lease.release()
    assert run_path


def test_an_attempt_that_lost_its_lease_does_not_commit(store):
    _commit_run(store, "seg-l", _frame())
    before = _listing(store, "seg-l")
    run = RunCommit(store.uri("out"), "seg-l", store.options)
    assert run.begin(force=True)
    gen = run._lease.held.generation
    thief = {"generation": gen + 1, "attempt": "thief", "host": "another-host.invalid",
             "pid": 1, "expires_at": time.time() + 3600}
    with pytest.raises(StorageError, match=r"lease .* was lost"), run.attempt():
        run.write_json("model/model.json", {})
        store.write_bytes(f"out/seg-l/_LEASE.{gen + 1:08d}", json.dumps(thief).encode())
        run.commit({})
    after = _listing(store, "seg-l")
    assert {p: v for p, v in after.items() if "_LEASE" not in p} == before


def test_latest_left_behind_is_repaired_by_the_next_skip(store):
    _commit_run(store, "seg-old", _frame())
    _commit_run(store, "seg-new", _frame(seed=1))
    # the process died between seg-new's _SUCCESS and LATEST
    store.write_bytes("out/LATEST", b"seg-old\n")
    RunCommit(store.uri("out"), "seg-new", store.options).repair_latest()
    assert latest_run(store.uri("out"), store.options) == "seg-new"
    # repairing an older committed run never moves LATEST backwards
    RunCommit(store.uri("out"), "seg-old", store.options).repair_latest()
    assert latest_run(store.uri("out"), store.options) == "seg-new"


def test_a_run_committed_before_attempts_existed_is_read_and_replaced(store):
    manifest = {"run_id": "seg-legacy", "files": [], "config": CONFIG}
    store.write_bytes("out/seg-legacy/manifest.json", json.dumps(manifest).encode())
    store.write_bytes("out/seg-legacy/model/model.json", b"{}")
    store.write_bytes("out/seg-legacy/_SUCCESS", b'{"run_id": "seg-legacy"}')
    assert read_manifest(store.uri("out", "seg-legacy"), store.options)["config"] == CONFIG
    forced = RunCommit(store.uri("out"), "seg-legacy", store.options)
    assert forced.begin(force=True)
    with forced.attempt():
        forced.write_json("model/model.json", {})
        forced.commit({"config": {"v": 2}})
    names = {p.rsplit("seg-legacy/", 1)[1].split("/")[0] for p in _listing(store, "seg-legacy")}
    assert names == {"_SUCCESS", forced.attempt_path.rsplit("/", 1)[1]}


def test_a_missing_output_bucket_is_an_error_and_never_created(s3):
    import s3fs

    run = RunCommit("s3://no-such-bucket-kd/out", "seg-b", s3)
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket-kd' .* does not exist"):
        run.begin()
    s3fs.S3FileSystem.clear_instance_cache()
    assert not s3fs.S3FileSystem(**s3).exists("no-such-bucket-kd")


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
    run._lease.release()
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
    with pytest.raises(StorageError, match="model file missing: "):
        load_model_documents(run.uri, store.options)


def test_a_failed_write_is_a_storage_error_naming_the_file(tmp_path):
    (tmp_path / "out").write_text("a file where the output folder should be")
    run = RunCommit(str(tmp_path / "out"), "seg-blocked")
    run.attempt_id = "blocked"
    with pytest.raises(StorageError, match=r"writing .*seg-blocked/attempt-blocked/model/model"):
        run.write_json("model/model.json", {})
    with pytest.raises(StorageError, match=r"writing .*seg-blocked/attempt-blocked/sweep"):
        run.write_table("sweep.parquet", _frame(5))


def test_read_manifest_of_a_run_or_of_the_latest_run(store):
    run = _commit_run(store, "seg-shown", _frame())
    by_run = read_manifest(run.uri, store.options)
    assert by_run["run_id"] == "seg-shown"
    assert read_manifest(store.uri("out"), store.options) == by_run  # LATEST
    with pytest.raises(StorageError, match=r"not a run folder \(no _SUCCESS\) and has no LATEST"):
        read_manifest(store.uri("nothing-here"), store.options)


class _RecordingFS(LocalFileSystem):
    """The local filesystem, recording the order in which files are written."""

    protocol = ("recfile", "file")
    written: list[str] = []  # noqa: RUF012 - the record of one test

    def pipe_file(self, path, value, **kwargs):
        super().pipe_file(path, value, **kwargs)
        type(self).written.append(str(path))


def test_success_is_written_after_every_file_and_latest_after_it(tmp_path):
    fsspec.register_implementation("recfile", _RecordingFS, clobber=True)
    _RecordingFS.written = []
    run = RunCommit(f"recfile://{tmp_path}/out", "seg-order")
    assert run.begin()
    with run.attempt():
        run.write_table("assignments/part-00000.parquet", _frame(10))
        run.write_json("model/model.json", {"k": 3})
        run.write_bytes("elbow.png", b"png")
        run.commit({})
    names = [p.rsplit("/seg-order/", 1)[-1] for p in _RecordingFS.written]
    data = [n for n in names if n.startswith("attempt-")]
    assert names.index(next(n for n in names if n.endswith("_SUCCESS"))) > max(
        names.index(n) for n in data
    )
    assert names[-1].endswith("LATEST") and names[-2] == "_SUCCESS"
    assert data[-1].endswith("manifest.json")  # the manifest lists the files before it
