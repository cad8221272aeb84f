"""Shared fixtures: one real LocalCluster (2 worker processes x 1 thread) per session."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="session")
def cluster():
    """A real distributed cluster with worker processes, shared by the whole session."""
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        memory_limit="4GiB",
    ) as c:
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
