"""The worker processes' settings (glibc's allocator thresholds): what the job's embedded
cluster and :func:`kmeans_dask.worker_settings` give the workers, and what a user set stays."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import pytest

from kmeans_dask import worker_settings
from kmeans_dask.engine.workers import WORKER_ENV
from kmeans_dask.job.cluster import connect
from kmeans_dask.job.config import parse_config

KEY = "distributed.nanny.pre-spawn-environ"
NAMES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def _worker_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in (*NAMES, "OMP_NUM_THREADS")}


def test_the_session_cluster_workers_have_the_settings(client):
    envs = client.run(_worker_env)
    assert len(envs) == 2
    for env in envs.values():
        assert env == {
            "MALLOC_TRIM_THRESHOLD_": str(32 << 20),
            "MALLOC_MMAP_THRESHOLD_": str(4 << 20),
            "OMP_NUM_THREADS": "1",  # distributed's own variables are kept
        }


def test_the_jobs_embedded_cluster_gives_its_workers_the_settings(tmp_path):
    config = parse_config(
        {
            "name": "workers",
            "input": {"uri": str(tmp_path / "in")},
            "output": {"uri": str(tmp_path / "out")},
            "cluster": {"n_workers": 1, "memory_limit": "1GiB"},
        }
    )
    with connect(config) as client:
        (env,) = client.run(_worker_env).values()
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(WORKER_ENV["MALLOC_TRIM_THRESHOLD_"])
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(WORKER_ENV["MALLOC_MMAP_THRESHOLD_"])
    assert env["OMP_NUM_THREADS"] == "1"


def test_replaces_only_distributeds_default_trim_threshold():
    import distributed  # noqa: F401  (its defaults loaded, as worker_settings does)

    assert dask.config.get(KEY)["MALLOC_TRIM_THRESHOLD_"] == 65536
    before = dict(dask.config.get(KEY))
    with worker_settings() as env:
        assert dask.config.get(KEY) == env
        assert env["MALLOC_TRIM_THRESHOLD_"] == 32 << 20
        assert env["MALLOC_MMAP_THRESHOLD_"] == 4 << 20
        assert env["OMP_NUM_THREADS"] == before["OMP_NUM_THREADS"]
    assert dask.config.get(KEY) == before  # restored on leaving


@pytest.mark.parametrize(
    "user",
    [
        {"MALLOC_TRIM_THRESHOLD_": 1 << 20},
        {"MALLOC_MMAP_THRESHOLD_": 4096},
        {"MALLOC_TRIM_THRESHOLD_": 65537, "MALLOC_MMAP_THRESHOLD_": 131072},
    ],
)
def test_values_the_user_set_are_kept(user):
    import distributed  # noqa: F401

    with dask.config.set({KEY: {**dask.config.get(KEY), **user}}), worker_settings() as env:
        for name in NAMES:
            assert env[name] == user.get(name, WORKER_ENV[name])


def test_the_shipped_dask_config_for_dask_worker_gives_the_same_settings():
    import yaml

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "deploy" / "dask" / "kmeans-dask.yaml").read_text())
    env = doc["distributed"]["nanny"]["pre-spawn-environ"]
    assert {name: env[name] for name in WORKER_ENV} == WORKER_ENV
    # a config file's mapping replaces distributed's: its own variables are in it too
    import distributed  # noqa: F401

    assert set(dask.config.get(KEY)) <= set(env)
    assert "/etc/dask/kmeans-dask.yaml" in (root / "deploy" / "Dockerfile").read_text()
