"""Iterations led by a worker (:mod:`kmeans_dask.engine.drive`): batches of Lloyd iterations
run by one worker's actor, which asks the other workers for their partials itself, give bit
for bit the iterations the client drives one at a time, on the real LocalCluster."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans

from kmeans_dask import KMeans
from kmeans_dask.engine.drive import LEAD_KEY
from kmeans_dask.engine.estep import EStep
from kmeans_dask.engine.prepare import load_blocks, prepare_input
from kmeans_dask.synthetic import make_blobs

# a budget so small that every batch is one iteration (batch boundaries everywhere)
TINY = 1e-9


def _blocks(client, dtype="float64"):
    X, _, _ = make_blobs(50_000, 6, centers=8, cluster_std=5.0, chunk_rows=5_000, random_state=4)
    X = client.persist(X.astype(dtype))
    with dask.config.set({"kmeans_dask.block-bytes": "64KiB"}):
        return X, load_blocks(prepare_input(X, owner="test"), owner="test")


def _iterate(bs, C, mean, bounds, lead, n_iter=40, tol=1e-8):
    """Every batch's records, then the final centres, with ``lead`` seconds per batch."""
    with dask.config.set({LEAD_KEY: lead}):
        est = EStep(bs, mean, bounds)
        try:
            assert est.groups is not None
            batches, done, converged = [], 0, False
            while done < n_iter and not converged:
                batch = est.iterate(C, n_iter - done, tol)
                assert batch.pending is None
                batches.append([(r[0], r[1], r[3]) for r in batch.records])
                done += len(batch.records)
                C, converged = batch.centres, batch.converged
            return batches, C, list(est.kinds)
        finally:
            est.close()


@pytest.mark.parametrize("bounds", [False, True])
def test_led_batches_are_the_client_driven_iterations(client, bounds):
    X, bs = _blocks(client)
    try:
        C = X[::6_007][:8].compute()
        mean = bs.moments()[1]
        led, C_led, kinds_led = _iterate(bs, C, mean, bounds, lead=60.0)
        one, C_one, kinds_one = _iterate(bs, C, mean, bounds, lead=0)
        assert max(len(b) for b in led) > 1  # the worker led several iterations at a time
        assert all(len(b) == 1 for b in one)  # the client drove each one
        flat = [r for b in led for r in b]
        assert flat == [r for b in one for r in b]  # inertia, shift, distances spared
        np.testing.assert_array_equal(C_led, C_one)
        assert kinds_led == kinds_one
        if bounds:
            assert "pruned" in kinds_led and sum(r[2] for r in flat) > 0
    finally:
        bs.release()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("algorithm", ["lloyd", "bounds"])
def test_fit_is_the_same_for_any_lead_budget(client, dtype, algorithm):
    X, _, _ = make_blobs(40_000, 5, centers=7, cluster_std=6.0, chunk_rows=4_000, random_state=6)
    X = X.astype(dtype)
    w = da.from_array(np.random.default_rng(1).uniform(0.5, 2.0, 40_000), chunks=4_000)
    fits = []
    for lead in (None, TINY, 0):
        cfg = {"kmeans_dask.block-bytes": "64KiB"} | ({} if lead is None else {LEAD_KEY: lead})
        with dask.config.set(cfg):
            km = KMeans(7, init="k-means||", max_iter=80, tol=1e-6, random_state=3,
                        algorithm=algorithm).fit(X, sample_weight=w)
        fits.append((km, km.labels_.compute()))
    (a, la), *others = fits
    for b, lb in others:
        np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
        np.testing.assert_array_equal(la, lb)
        assert a.n_iter_ == b.n_iter_ and a.inertia_ == b.inertia_
        assert [(h.inertia, h.center_shift, h.n_skipped) for h in a.history_] == [
            (h.inertia, h.center_shift, h.n_skipped) for h in b.history_
        ]


@pytest.mark.parametrize("algorithm", ["lloyd", "bounds"])
def test_an_empty_cluster_inside_a_led_batch_is_relocated_as_by_scikit_learn(client, algorithm):
    """Two identical initial centres: every row goes to the first, the second is empty in the
    first iteration and takes the farthest row (the batch stops; the client relocates)."""
    X, _, _ = make_blobs(30_000, 4, centers=5, cluster_std=2.0, chunk_rows=3_000, random_state=8)
    Xn = X.compute()
    init = Xn[[0, 0, 5_000, 10_000, 20_000]].copy()
    fits = []
    for lead in (None, 0):
        cfg = {"kmeans_dask.block-bytes": "64KiB"} | ({} if lead is None else {LEAD_KEY: lead})
        with dask.config.set(cfg):
            fits.append(KMeans(5, init=init, max_iter=100, tol=1e-6, algorithm=algorithm).fit(X))
    a, b = fits
    assert a.history_[0].n_empty == 1 and b.history_[0].n_empty == 1
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.n_iter_ == b.n_iter_ and a.inertia_ == b.inertia_
    ref = SKKMeans(5, init=init, n_init=1, max_iter=100, tol=1e-6, algorithm="lloyd").fit(Xn)
    assert a.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(np.asarray(a.labels_), ref.labels_)
    np.testing.assert_allclose(a.cluster_centers_, ref.cluster_centers_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.inertia_, ref.inertia_, rtol=1e-10)
