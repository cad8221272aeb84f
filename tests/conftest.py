"""Shared fixtures: one real LocalCluster (2 worker processes x 1 thread) per session, and a
real S3-protocol server (moto's standalone server on 127.0.0.1) reached through s3fs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

# Credentials come from the environment, as in production; set before any worker process
# starts so that the workers resolve the same ones. Never real credentials.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "kmeans-dask-test-key")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "kmeans-dask-test-secret")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Prefect: a private home per test session (its database, settings), no telemetry (no network)
# (with pytest-xdist, each worker process gets its own: two harnesses must not share a database)
_xdist = os.environ.get("PYTEST_XDIST_WORKER")
if _xdist:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix=f"kmeans-dask-prefect-{_xdist}-")
else:
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="kmeans-dask-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


@pytest.fixture(scope="session")
def cluster():
    """A real distributed cluster with worker processes, shared by the whole session (with
    the worker settings the job's embedded cluster gets)."""
    from kmeans_dask import worker_settings

    with worker_settings():  # read by the nannies as they are made
        made = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit="4GiB",
        )
    with made as c:
        yield c


@pytest.fixture(scope="session")
def _session_client(cluster):
    with Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def client(_session_client):
    """The session's client, current for this test only (other tests see no cluster)."""
    with _session_client.as_current():
        yield _session_client


@pytest.fixture(params=["local", "distributed"])
def backend(request):
    """Run a test both without a cluster (numpy/threads) and on the LocalCluster."""
    if request.param == "local":
        yield None
    else:
        c = request.getfixturevalue("_session_client")
        with c.as_current():
            yield c


@pytest.fixture
def keep_chunks():
    """Keep the caller's chunking (no merging into large blocks), to test chunk edge cases."""
    with dask.config.set({"kmeans_dask.block-bytes": None}):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --------------------------------------------------------------------------- S3 (moto)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's standalone S3 server in its own process, as s3fs's own test suite runs it."""
    import requests

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(endpoint, timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"moto server did not start on {endpoint}")
            time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(s3_endpoint):
    """A clean S3 server with one bucket, ``test-bucket``; returns the storage_options."""
    import requests
    import s3fs

    requests.post(f"{s3_endpoint}/moto-api/reset", timeout=10)
    s3fs.S3FileSystem.clear_instance_cache()
    opts = {"endpoint_url": s3_endpoint}
    s3fs.S3FileSystem(**opts).mkdir("test-bucket")
    yield opts
    s3fs.S3FileSystem.clear_instance_cache()


@dataclass
class Store:
    """A place to put test data and outputs: a local folder or an S3 prefix."""

    base: str
    options: dict | None

    def uri(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    @property
    def fs(self):
        from kmeans_dask.io import filesystem

        return filesystem(self.base, self.options)[0]

    def write_parquet(self, rel: str, df, **kw) -> str:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False, **kw)
        return self.write_bytes(rel, buf.getvalue())

    def write_csv(self, rel: str, df) -> str:
        return self.write_bytes(rel, df.to_csv(index=False).encode())

    def write_partitioned(self, rel: str, df, parts: int) -> None:
        """``df`` as ``parts`` Parquet files ``{rel}/part-NNN.parquet`` (a ``region`` column,
        the demo's Hive key, is dropped)."""
        bounds = np.linspace(0, len(df), parts + 1).astype(int)
        df = df.drop(columns=[c for c in ("region",) if c in df.columns])
        for i in range(parts):
            self.write_parquet(f"{rel}/part-{i:03d}.parquet", df.iloc[bounds[i] : bounds[i + 1]])

    def read_folder(self, uri: str, folder: str):
        """All Parquet files of ``{uri}/{folder}`` concatenated (in file name order)."""
        import io

        import pandas as pd

        fs = self.fs
        fs.invalidate_cache()
        paths = sorted(p for p in fs.find(f"{uri}/{folder}") if p.endswith(".parquet"))
        frames = [pd.read_parquet(io.BytesIO(fs.cat_file(p))) for p in paths]
        return pd.concat(frames, ignore_index=True)

    def write_bytes(self, rel: str, data: bytes) -> str:
        fs = self.fs
        path = self.uri(rel)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)
        fs.invalidate_cache()
        return path


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """Every storage test runs on a local folder and on the S3 server."""
    if request.param == "local":
        yield Store(str(tmp_path), None)
    else:
        opts = request.getfixturevalue("s3")
        yield Store(f"s3://test-bucket/{uuid.uuid4().hex[:8]}", opts)


# --------------------------------------------------------------------------- Prefect


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness: a temporary API server and database for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
