"""One call per worker per pass (:mod:`kmeans_dask.engine.groups`) and the placement-free
block-tree reduction (:mod:`kmeans_dask.engine.tree`), on the real LocalCluster."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

from kmeans_dask import KMeans
from kmeans_dask.engine.estep import EStep
from kmeans_dask.engine.prepare import load_blocks, prepare_input
from kmeans_dask.engine.tree import add_partials, cover, reduce_local, reduce_root
from kmeans_dask.synthetic import make_blobs


# ----------------------------------------------------------------------------- tree
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 37])
def test_any_split_of_the_blocks_gives_the_same_bits(n):
    rng = np.random.default_rng(n)
    # values of wildly different magnitudes: any change of the addition order shows
    leaves = {
        i: (rng.normal(size=5) * 10.0 ** rng.integers(-8, 9), float(rng.normal())) for i in range(n)
    }
    ref = reduce_root({(i, i + 1): v for i, v in leaves.items()}, n)
    for trial in range(20):
        owner = rng.integers(0, 1 + trial % 5, size=n)  # blocks scattered over workers
        nodes = {}
        for w in set(owner.tolist()):
            mine = np.flatnonzero(owner == w).tolist()
            covered = cover(mine, n)
            assert sorted(i for lo, hi in covered for i in range(lo, hi)) == mine
            nodes.update({node: reduce_local(leaves, node) for node in covered})
        got = reduce_root(nodes, n)
        np.testing.assert_array_equal(got[0], ref[0])
        assert got[1] == ref[1]
    # and the total is the sum (to rounding)
    np.testing.assert_allclose(
        ref[0], np.sum([v[0] for v in leaves.values()], axis=0), rtol=1e-9, atol=1e-300
    )


def test_cover_of_contiguous_runs_is_small():
    assert cover(range(0, 8), 16) == [(0, 8)]
    assert cover(range(8, 16), 16) == [(8, 16)]
    assert cover([3], 16) == [(3, 4)]
    assert cover(range(16), 16) == [(0, 16)]
    assert cover([], 16) == []
    assert add_partials(None, (1, 2.0)) == (1, 2.0)


def test_reduce_root_names_a_missing_block():
    with pytest.raises(KeyError, match="block 2"):
        reduce_root({(0, 2): 1.0, (3, 4): 1.0}, 4)


# ----------------------------------------------------------------------------- groups
def _blocks(client, n=60_000, d=6, chunks=5_000, dtype="float64"):
    X, _, _ = make_blobs(n, d, centers=5, cluster_std=3.0, chunk_rows=chunks, random_state=3)
    X = client.persist(X.astype(dtype))
    with dask.config.set({"kmeans_dask.block-bytes": "64KiB"}):
        return X, load_blocks(prepare_input(X, owner="test"), owner="test")


@pytest.mark.parametrize("bounds", [False, True])
def test_one_actor_per_worker_and_the_same_partials_as_one_task_per_block(client, bounds):
    X, bs = _blocks(client)
    try:
        assert bs.n_blocks > len(client.nthreads())  # several blocks per worker
        C = X[:5].compute()
        mean = bs.moments()[1]
        grouped = EStep(bs, mean, bounds)
        with dask.config.set({"kmeans_dask.worker-groups": False}):
            by_block = EStep(bs, mean, bounds)
        try:
            assert grouped.groups is not None and len(grouped.groups._actors) == 2
            assert by_block.groups is None
            for _ in range(6):  # later iterations use the bounds kept on the workers
                a, b = grouped(C), by_block(C)
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
                assert a[2] == b[2] and a[3] == b[3]
                C = a[0] / np.maximum(a[1], 1)[:, None]
            if bounds:
                assert a[3] > 0  # the bounds spared distances in the last iteration
        finally:
            grouped.close()
            by_block.close()
    finally:
        bs.release()


@pytest.mark.parametrize("algorithm", ["lloyd", "bounds"])
def test_fit_is_bit_identical_with_and_without_worker_groups(client, algorithm):
    X, _, _ = make_blobs(40_000, 5, centers=6, cluster_std=6.0, chunk_rows=4_000, random_state=2)
    kw = dict(n_clusters=6, init="k-means||", max_iter=30, random_state=0, algorithm=algorithm)
    with dask.config.set({"kmeans_dask.block-bytes": "64KiB"}):
        a = KMeans(**kw).fit(X)
        with dask.config.set({"kmeans_dask.worker-groups": False}):
            b = KMeans(**kw).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.n_iter_ == b.n_iter_ and a.inertia_ == b.inertia_


def test_workers_with_several_threads_share_the_blocks():
    # the actor runs its blocks on the worker's task threads: 2 threads, same result as 1 task
    X = da.random.default_rng(5).normal(size=(30_000, 4), chunks=(3_000, 4))
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as lc,
        Client(lc, set_as_default=False) as c,
        dask.config.set({"kmeans_dask.block-bytes": "32KiB"}),
    ):
        with c.as_current():
            a = KMeans(4, init="random", random_state=1, max_iter=10, tol=0).fit(X)
            with dask.config.set({"kmeans_dask.worker-groups": False}):
                b = KMeans(4, init="random", random_state=1, max_iter=10, tol=0).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.inertia_ == b.inertia_


def test_a_finished_fit_leaves_no_actor_on_the_workers(client):
    """The per-worker actors (and the blocks they reference) go as soon as a fit ends, not
    when Python's cyclic garbage collector next runs: distributed's actor calls build
    reference cycles through the proxies, so the collector is off here to make that visible."""
    import gc
    import time

    X, _, _ = make_blobs(20_000, 4, centers=4, cluster_std=3.0, chunk_rows=2_000, random_state=1)
    X = client.persist(X)
    gc.collect()
    gc.disable()
    try:
        with dask.config.set({"kmeans_dask.block-bytes": "64KiB"}):
            KMeans(4, init="random", max_iter=5, tol=0, random_state=0).fit(X)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            held = [k for ks in client.has_what().values() for k in ks if "-group-" in str(k)]
            if not held:
                break
            time.sleep(0.1)
        assert held == []
    finally:
        gc.enable()
