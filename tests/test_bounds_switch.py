"""Adaptive bounds: an E-step picks a plain, full or pruned pass from the centres' moves
(:mod:`kmeans_dask.engine.estep`); every sequence of passes gives plain Lloyd's partials bit
for bit, across the switches, after empty-cluster relocations, with sample weights, on the
per-worker actors, on one task per block, and on streamed blocks."""

from __future__ import annotations

import dask
import dask.array
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from kmeans_dask import KMeans
from kmeans_dask.engine.estep import SWITCH_KEY, EStep, switch_ratio
from kmeans_dask.engine.lloyd import _global_farthest
from kmeans_dask.engine.prepare import load_blocks, prepare_input
from kmeans_dask.kernels.lloyd import CentreSet, m_step


def _data(n=12_000, k=12, seed=0, dtype=np.float64):
    X, _ = make_blobs(n, n_features=4, centers=k, cluster_std=2.5, center_box=(-12, 12),
                      random_state=seed)
    return np.ascontiguousarray(X, dtype=dtype)


def _run(bs, C, mean, bounds, n_iter):
    """Lloyd by hand: every iteration's partials and the kinds of the bounds E-step."""
    est = EStep(bs, mean, bounds)
    out = []
    try:
        for _ in range(n_iter):
            sums, wsum, inertia, skipped = est(C)
            out.append((sums.copy(), wsum.copy(), inertia, skipped))
            cs = CentreSet(C, mean)
            C, _, n_empty = m_step(C, sums, wsum, lambda m, cs=cs: _global_farthest(bs, cs, m))
            if n_empty:
                est.reset()
        return out, est.kinds
    finally:
        est.close()


@pytest.mark.parametrize("groups", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_switches_give_plain_partials(client, groups, weighted):
    """A start with coincident and far centres (empty clusters re-seeded: the bounds restart)
    on overlapping blobs: plain passes while the centres move, a full pass, pruned passes;
    each iteration's partials equal the plain E-step's."""
    X = _data()
    w = np.random.default_rng(1).uniform(0.3, 2.0, len(X)) if weighted else None
    da_X = dask.array.from_array(X, chunks=(1_500, -1))
    da_w = None if w is None else dask.array.from_array(w, chunks=1_500)
    with dask.config.set({"kmeans_dask.block-bytes": "64KiB", "kmeans_dask.worker-groups": groups,
                          SWITCH_KEY: 0.08}):
        bs = load_blocks(prepare_input(da_X, sample_weight=da_w, owner="test"), owner="test")
        try:
            mean = bs.moments()[1]
            C0 = X[np.random.default_rng(2).choice(len(X), 12, replace=False)].copy()
            C0[1] = C0[0]  # coincident: the second is empty and re-seeded
            C0[11] = 80.0  # far from every row: empty
            plain, _ = _run(bs, C0, mean, False, 25)
            pruned, kinds = _run(bs, C0, mean, True, 25)
        finally:
            bs.release()
    assert kinds[0] == "plain" and "full" in kinds and "pruned" in kinds, kinds
    assert kinds.index("full") < kinds.index("pruned")
    for it, (a, b) in enumerate(zip(plain, pruned, strict=True)):
        np.testing.assert_array_equal(a[0], b[0], err_msg=f"sums, iteration {it}")
        np.testing.assert_array_equal(a[1], b[1], err_msg=f"weights, iteration {it}")
        assert a[2] == b[2], it
        if kinds[it] != "pruned":
            assert b[3] == 0, (it, kinds[it])  # plain and full passes compute every distance
    assert sum(b[3] for b in pruned) > 0


def test_a_relocation_restarts_with_a_full_pass(client):
    """After an empty cluster is re-seeded no pass is pruned before a full one."""
    X = _data(seed=3)
    with dask.config.set({"kmeans_dask.block-bytes": "64KiB", SWITCH_KEY: np.inf}):
        bs = load_blocks(prepare_input(dask.array.from_array(X, chunks=(2_000, -1)),
                                       owner="test"), owner="test")
        try:
            mean = bs.moments()[1]
            C0 = X[:12].copy()
            C0[5] = 1e3  # empty in the first iteration
            plain, _ = _run(bs, C0, mean, False, 8)
            pruned, kinds = _run(bs, C0, mean, True, 8)
        finally:
            bs.release()
    # inf: never plain; the first pass and the one after the relocation are full
    assert kinds[:3] == ["full", "full", "pruned"], kinds
    for a, b in zip(plain, pruned, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[2] == b[2]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ratio", [0.0, 0.02, None, np.inf])
def test_estimator_equals_lloyd_for_any_switch_setting(backend, dtype, ratio):
    """Never prune (0), prune late, the default rule, prune in every iteration (inf): the
    fits are plain Lloyd's (centres bit for bit, labels, n_iter, inertia, history)."""
    X = _data(n=6_000, k=16, seed=5, dtype=dtype)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    fits = {}
    with dask.config.set({SWITCH_KEY: ratio} if ratio is not None else {}):
        for algorithm in ("lloyd", "bounds"):
            km = KMeans(16, algorithm=algorithm, init="random", random_state=2, max_iter=60,
                        tol=1e-7)
            fits[algorithm] = km.fit(dask.array.from_array(X, chunks=(1_777, -1)),
                                     sample_weight=w)
    a, b = fits["lloyd"], fits["bounds"]
    np.testing.assert_array_equal(b.cluster_centers_, a.cluster_centers_)
    np.testing.assert_array_equal(np.asarray(b.labels_), np.asarray(a.labels_))
    assert b.n_iter_ == a.n_iter_ and b.inertia_ == a.inertia_
    assert [h.inertia for h in b.history_] == [h.inertia for h in a.history_]
    spared = sum(h.n_skipped for h in b.history_)
    assert spared == 0 if ratio == 0.0 else spared > 0


def test_default_switch_ratio():
    # float32 prunes later than float64 (cheaper product), at every k
    for k in (2, 16, 64, 256):
        assert 0.0 < switch_ratio(k, np.float32) < switch_ratio(k, np.float64) <= 0.1
    with dask.config.set({SWITCH_KEY: "inf"}):
        assert switch_ratio(16, np.float64) == np.inf
