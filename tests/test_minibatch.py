"""Mini-batch k-means (``KMeans(algorithm="minibatch")``) against scikit-learn's
MiniBatchKMeans, hand-computed steps, the generated truth, and itself across chunkings."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from kmeans_dask import KMeans, sweep_k
from kmeans_dask.exceptions import InvalidParameterError
from kmeans_dask.kernels.minibatch import EarlyStopping, minibatch_step

ZERO = np.zeros(2)


@pytest.fixture(autouse=True)
def _one_sklearn_thread():
    """scikit-learn's OpenMP threads spin against the cluster's workers on 2 cores (a 0.1 s
    MiniBatchKMeans fit took 2-4 s here): give it one thread, as our caller-side steps have."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _blobs(n=20000, d=8, k=6, std=1.0, seed=1, dtype=np.float64):
    X, y = make_blobs(n, n_features=d, centers=k, cluster_std=std, random_state=seed)
    return X.astype(dtype), y


def _exact_inertia(X, C, w=None):
    d2 = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1).min(1)
    return float(d2.sum() if w is None else d2 @ w)


# --------------------------------------------------------------------------- the kernel


def test_one_step_is_the_hand_computed_update():
    """Dyadic numbers: every value below is exact in floating point."""
    X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    w = np.array([0.5, 1.5, 1.0, 1.0])
    C = np.array([[1.0, 1.0], [11.0, 11.0]])
    counts = np.array([2.0, 0.0])
    new, inertia, n_re = minibatch_step(X, w, C, counts, ZERO, np.random.default_rng(0))
    # centre 0 had weight 2 at (1, 1); it receives 0.5 * (0, 0) + 1.5 * (2, 0) (weight 2):
    # (2 * (1, 1) + (3, 0)) / 4 = (1.25, 0.5). Centre 1 had nothing: the mean of its rows.
    np.testing.assert_array_equal(new, [[1.25, 0.5], [11.0, 10.0]])
    np.testing.assert_array_equal(counts, [4.0, 2.0])
    # each row is at squared distance 2 of its centre before the step
    assert inertia == 0.5 * 2 + 1.5 * 2 + 2 + 2 and n_re == 0
    np.testing.assert_array_equal(C, [[1.0, 1.0], [11.0, 11.0]])  # input left alone


def test_steps_match_sklearn_partial_fit():
    """Ten weighted steps from the same centres and batches as scikit-learn's partial_fit
    (reassignment off: its random draws are scikit-learn's own)."""
    rng = np.random.default_rng(3)
    X, _ = _blobs(4000, d=5, k=4, std=2.0)
    w = rng.uniform(0.5, 2.0, size=len(X))
    init = X[:4].copy()
    sk = MiniBatchKMeans(4, init=init, n_init=1, reassignment_ratio=0.0, batch_size=256)
    C, counts = init.copy(), np.zeros(4)
    for step in range(10):  # noqa: B007 (checked after the loop)
        idx = rng.integers(0, len(X), size=256)
        sk.partial_fit(X[idx], sample_weight=w[idx])
        C, _, _ = minibatch_step(X[idx], w[idx], C, counts, X.mean(0), rng, False, 0.0)
        np.testing.assert_allclose(C, sk.cluster_centers_, rtol=1e-12, atol=1e-12)
    assert sk.n_steps_ == step + 1


def test_starved_centre_is_reassigned_to_a_batch_row():
    X, _ = _blobs(512, d=3, k=2, std=0.5)
    C = np.vstack([X[:2], np.full((1, 3), 1e3)])  # the third centre never wins a row
    counts = np.zeros(3)
    new, _, n_re = minibatch_step(X, None, C, counts, np.zeros(3), np.random.default_rng(1), True)
    assert n_re == 1
    assert any(np.array_equal(new[2], row) for row in X)
    assert counts[2] == counts[:2].min() > 0  # scikit-learn's rule: the smallest other weight


def test_early_stopping_rule():
    # inertia that only grows: no new minimum after step 1, stop after 3 more steps
    stop = EarlyStopping(batch_size=10, n_samples=1000, tol_abs=0.0, max_no_improvement=3)
    reasons = [stop.update(s, 1.0, 100.0 + s) for s in range(10)]
    assert reasons[:4] == [None] * 4 and reasons[4] == "no_improvement"
    # tol: a small step stops at once, except the first step, which is never judged
    stop = EarlyStopping(batch_size=10, n_samples=1000, tol_abs=0.5, max_no_improvement=None)
    assert stop.update(0, 0.1, 5.0) is None and stop.update(1, 0.1, 5.0) == "tol"
    # max_no_improvement=None and tol=0: never stops
    stop = EarlyStopping(batch_size=10, n_samples=1000, tol_abs=0.0, max_no_improvement=None)
    assert all(stop.update(s, 0.0, 1.0) is None for s in range(50))


# --------------------------------------------------------------------------- the estimator


def test_matches_sklearn_minibatch_on_separated_blobs():
    X, y = _blobs()
    ours = KMeans(6, algorithm="minibatch", random_state=0).fit(X)
    ref = MiniBatchKMeans(6, random_state=0, n_init=3).fit(X)
    labels = ours.labels_.compute()
    assert adjusted_rand_score(y, labels) == 1.0
    assert adjusted_rand_score(ref.labels_, labels) == 1.0
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=0.005)
    assert ours.inertia_ == pytest.approx(_exact_inertia(X, ours.cluster_centers_), rel=1e-9)
    assert ours.n_iter_ == math.ceil(ours.n_steps_ * 1024 / len(X))
    assert ours.n_init_inertias_.tolist() == [ours.inertia_]
    assert len(ours.history_) == ours.n_steps_


@pytest.mark.parametrize("init", ["k-means++", "k-means||"])
def test_inertia_near_sklearn_on_overlapping_blobs(init):
    """Overlapping blobs: within 1% of scikit-learn's MiniBatchKMeans (best of 3 inits) and
    of full Lloyd (scikit-learn's KMeans, best of 5)."""
    X, _ = _blobs(30000, d=8, k=10, std=3.0)
    ours = KMeans(10, algorithm="minibatch", init=init, n_init=3, random_state=0).fit(X)
    ref = MiniBatchKMeans(10, random_state=0, n_init=3).fit(X)
    full = SKKMeans(10, n_init=5, random_state=0).fit(X)
    assert ours.inertia_ <= ref.inertia_ * 1.01
    assert ours.inertia_ <= full.inertia_ * 1.01
    assert ours.init_info_["method"] == init
    # n_init: three whole runs on the pool (here all the rows), the lowest inertia kept
    assert len(ours.init_info_["pool_inertias"]) == 3
    assert ours.inertia_ == pytest.approx(min(ours.init_info_["pool_inertias"]), rel=1e-9)


def test_random_init_as_good_as_sklearns_on_average():
    """init='random' often ends in a local optimum (in scikit-learn too): compare the mean
    over 10 seeds (measured over 20: ours 2.59e6, scikit-learn's 2.68e6)."""
    X, _ = _blobs(30000, d=8, k=10, std=3.0)
    ours = [
        KMeans(10, algorithm="minibatch", init="random", tol=0, random_state=s).fit(X).inertia_
        for s in range(10)
    ]
    ref = [
        MiniBatchKMeans(10, init="random", n_init=1, random_state=s).fit(X).inertia_
        for s in range(10)
    ]
    assert np.mean(ours) <= np.mean(ref) * 1.03


def test_sample_weight_flows_through():
    """Integer weights act like repeated rows; zero-weight rows are ignored."""
    X, y = _blobs(6000, d=4, k=3)
    rng = np.random.default_rng(0)
    w = rng.integers(1, 4, size=len(X)).astype(np.float64)
    far = np.full((50, 4), 500.0)  # zero-weight outliers must not pull a centre
    Xw = np.vstack([X, far])
    ww = np.concatenate([w, np.zeros(50)])
    ours = KMeans(3, algorithm="minibatch", random_state=0).fit(Xw, sample_weight=ww)
    rep = KMeans(3, algorithm="minibatch", random_state=0).fit(np.repeat(X, w.astype(int), 0))
    ref = MiniBatchKMeans(3, random_state=0, n_init=3).fit(X, sample_weight=w)
    assert adjusted_rand_score(y, ours.labels_.compute()[: len(X)]) == 1.0
    assert ours.inertia_ == pytest.approx(_exact_inertia(Xw, ours.cluster_centers_, ww), rel=1e-9)
    assert ours.inertia_ == pytest.approx(rep.inertia_, rel=0.005)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=0.005)


def test_refine_is_lloyd_from_the_minibatch_centres():
    """With the whole data as the pool, refining = Lloyd (scikit-learn's KMeans) from the
    centres of the same run without refining; the steps are the same either way."""
    X, _ = _blobs(6000, d=5, k=8, std=3.0, seed=4)
    plain = KMeans(8, algorithm="minibatch", refine=False, tol=0, random_state=2).fit(X)
    refined = KMeans(8, algorithm="minibatch", tol=0, random_state=2).fit(X)
    ref = SKKMeans(8, init=plain.cluster_centers_, n_init=1, tol=0, max_iter=300).fit(X)
    assert refined.n_steps_ == plain.n_steps_ and plain.init_info_["refine_iter"] == 0
    assert refined.init_info_["refine_iter"] >= 1 and refined.converged_
    np.testing.assert_allclose(refined.cluster_centers_, ref.cluster_centers_, rtol=1e-9)
    np.testing.assert_array_equal(refined.labels_.compute(), ref.labels_)
    assert refined.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    assert refined.inertia_ <= plain.inertia_


def test_refine_over_slabs_is_lloyd_for_any_thread_count():
    """The refinement adds its fixed slabs' partials in slab order: a pool of several slabs
    gives scikit-learn's Lloyd from the same centres, bit-identical over 1 or 2 threads."""
    from concurrent.futures import ThreadPoolExecutor

    from kmeans_dask.kernels.minibatch import REFINE_SLAB_ROWS, refine_lloyd

    X, _ = _blobs(3 * REFINE_SLAB_ROWS + 1234, d=6, k=5, std=4.0, seed=9)
    start = np.ascontiguousarray(X[:5])
    ref = X.mean(axis=0)
    one = refine_lloyd(X, None, start, 0.0, 300, ref)
    with ThreadPoolExecutor(2) as threads:
        two = refine_lloyd(X, None, start, 0.0, 300, ref, threads.map)
    np.testing.assert_array_equal(one[0], two[0])
    assert one[1:] == two[1:] and one[2]
    sk = SKKMeans(5, init=start, n_init=1, tol=0, max_iter=300).fit(X)
    np.testing.assert_allclose(one[0], sk.cluster_centers_, rtol=1e-9, atol=1e-9)


def test_early_stopping_stops_and_max_iter_bounds_the_steps():
    X, _ = _blobs(5000, d=4, k=4)
    mb = {"algorithm": "minibatch", "random_state": 0, "batch_size": 100, "refine": False}
    early = KMeans(4, tol=0, **mb).fit(X)
    assert early.init_info_["stop"] == "no_improvement"
    assert early.n_steps_ < 2 * 5000 // 100 and early.converged_
    by_tol = KMeans(4, tol=1e-2, **mb).fit(X)
    assert by_tol.init_info_["stop"] == "tol" and by_tol.n_steps_ < early.n_steps_
    full = KMeans(4, tol=0, max_no_improvement=None, max_iter=2, **mb).fit(X)
    assert full.n_steps_ == 2 * 5000 // 100 and full.n_iter_ == 2
    assert full.init_info_["stop"] is None and not full.converged_


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_centres_for_any_chunking_and_pool_size(dtype, keep_chunks):
    """Row-level draws: the same seed gives bit-identical centres for numpy input and any
    chunking, with the whole data as the pool and with a pool smaller than the data."""
    X, _ = _blobs(9000, d=6, k=5, std=2.5, dtype=dtype)
    for budget in ["64MiB", f"{5000 * 6 * np.dtype(dtype).itemsize}B"]:
        with dask.config.set({"kmeans_dask.minibatch-pool-bytes": budget}):
            fits = [
                KMeans(5, algorithm="minibatch", init="k-means++", random_state=7).fit(data)
                for data in (X, da.from_array(X, chunks=(1000, -1)), da.from_array(X, (777, -1)))
            ]
        assert fits[0].cluster_centers_.dtype == dtype
        pool = fits[0].init_info_["pool_rows"]
        assert pool == 9000 if budget == "64MiB" else 4500 < pool < 5500
        for f in fits[1:]:
            np.testing.assert_array_equal(f.cluster_centers_, fits[0].cluster_centers_)
            np.testing.assert_array_equal(f.labels_.compute(), fits[0].labels_.compute())
            assert f.n_steps_ == fits[0].n_steps_ and f.init_info_["pool_rows"] == pool
            assert f.inertia_ == pytest.approx(fits[0].inertia_, rel=1e-6)


def test_same_result_on_the_cluster_as_locally(_session_client):
    """The local thread pool and the LocalCluster's worker processes: bit-identical."""
    X, _ = _blobs(12000, d=6, k=5, std=2.5)
    Xd = da.from_array(X, chunks=(3000, -1))
    for init in ["k-means++", "k-means||"]:
        local = KMeans(5, algorithm="minibatch", init=init, random_state=3).fit(Xd)
        with _session_client.as_current():
            dist = KMeans(5, algorithm="minibatch", init=init, random_state=3).fit(Xd)
            labels = dist.labels_.compute()
        np.testing.assert_array_equal(dist.cluster_centers_, local.cluster_centers_)
        np.testing.assert_array_equal(labels, local.labels_.compute())
        assert dist.inertia_ == local.inertia_ and dist.n_steps_ == local.n_steps_


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"algorithm": "elkan"},
            "The 'algorithm' parameter of KMeans must be one of 'lloyd', 'bounds', 'auto', "
            "'minibatch'. "
            "Got 'elkan' instead.",
        ),
        (
            {"batch_size": 0},
            "The 'batch_size' parameter of KMeans must be an int in the range [1, inf). "
            "Got 0 instead.",
        ),
        (
            {"batch_size": 10.5},
            "The 'batch_size' parameter of KMeans must be an int in the range [1, inf). "
            "Got 10.5 instead.",
        ),
        (
            {"max_no_improvement": -1},
            "The 'max_no_improvement' parameter of KMeans must be an int in the range "
            "[0, inf) or None. Got -1 instead.",
        ),
        (
            {"refine": 1},
            "The 'refine' parameter of KMeans must be an instance of 'bool'. Got 1 instead.",
        ),
        (
            {"reassignment_ratio": -0.5},
            "The 'reassignment_ratio' parameter of KMeans must be a float in the range "
            "[0, inf). Got -0.5 instead.",
        ),
    ],
)
def test_bad_parameters_are_named(params, message):
    X, _ = _blobs(100, d=2, k=2)
    km = KMeans(2, **params)
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        km.fit(X)
    assert km.get_params()[next(iter(params))] == next(iter(params.values()))


def test_refit_with_lloyd_drops_n_steps():
    X, _ = _blobs(2000, d=3, k=3)
    km = KMeans(3, algorithm="minibatch", random_state=0).fit(X)
    assert km.n_steps_ >= 1
    km.set_params(algorithm="lloyd").fit(X)
    assert not hasattr(km, "n_steps_")


def test_sweep_with_minibatch(client):
    X, y = _blobs(8000, d=4, k=4, std=0.8)
    res = sweep_k(
        da.from_array(X, chunks=(2000, -1)),
        range(2, 7),
        algorithm="minibatch",
        silhouette_sample_size=1000,
    )
    assert res.k == 4
    assert adjusted_rand_score(y, res.model.labels_.compute()) == 1.0
    assert res.model.n_steps_ >= 1


def test_job_with_minibatch_config(tmp_path, client):
    from kmeans_dask.job.config import parse_config
    from kmeans_dask.job.demo import DEMO_FEATURES, make_customers
    from kmeans_dask.job.pipeline import run

    df, truth = make_customers(4000, seed=1)
    (tmp_path / "in").mkdir()
    for i, start in enumerate(range(0, len(df), 1500)):
        part = df.drop(columns=["region"]).iloc[start : start + 1500]
        part.to_parquet(tmp_path / "in" / f"part-{i}.parquet", index=False)
    data = {
        "name": "mb",
        "input": {
            "uri": str(tmp_path / "in"),
            "id_column": "customer_id",
            "columns": DEMO_FEATURES,
        },
        "kmeans": {
            "k": 5,
            "algorithm": "minibatch",
            "batch_size": 256,
            "max_no_improvement": 20,
            "reassignment_ratio": 0.02,
            "random_state": 0,
        },
        "output": {"uri": str(tmp_path / "out")},
    }
    res = run(parse_config(data), client=client)
    assert not res.skipped and res.k == 5
    results = Path(res.results_uri)
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["config"]["kmeans"]["algorithm"] == "minibatch"
    model = json.loads((results / "model" / "model.json").read_text())
    assert model["params"]["algorithm"] == "minibatch" and model["params"]["batch_size"] == 256
    assign = pd.concat(pd.read_parquet(p) for p in sorted((results / "assignments").glob("*")))
    merged = df.assign(truth=truth).merge(assign, on="customer_id")
    assert adjusted_rand_score(merged.truth, merged.segment) == 1.0


# --------------------------------------------------------------------------- the pool's reads


class _CountedRecipe:
    """A block read from an in-memory array, counting its reads (a streamed source)."""

    def __init__(self, X, start, stop, reads, transform=None):
        self.X, self.start, self.stop, self.reads = X, start, stop, reads
        self.transform = transform
        self.n_rows = stop - start

    def load(self):
        from kmeans_dask.engine.block import make_block

        self.reads.append(self.start)
        rows = self.X[self.start : self.stop].copy()
        if self.transform is not None:
            self.transform.apply(rows)
        return make_block(rows, None, rows.dtype)

    def scaled(self, transform):
        return _CountedRecipe(self.X, self.start, self.stop, self.reads, transform)


def _streamed(X, reads, pool=None, cuts=(0, 2500, 2600, 6100, 9000)):
    from kmeans_dask.engine.blocks import BlockSet

    recipes = [_CountedRecipe(X, a, b, reads) for a, b in itertools.pairwise(cuts)]
    return BlockSet.from_recipes(recipes, X.shape[1], X.dtype, persist=False, pool=pool)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_pool_drawn_in_the_summary_pass_is_the_same_pool(dtype):
    """A pool requested with a streamed block set is drawn in its summary pass: a mini-batch
    fit then reads the data once (the assignment) instead of twice, and its centres, labels
    and inertia are bit for bit those of the fit that draws its own pool, also after
    standardising (the pool is scaled on the caller, element for element as the blocks)."""
    from kmeans_dask.engine.minibatch import pool_rate
    from kmeans_dask.engine.pool import PoolRequest
    from kmeans_dask.engine.source import Affine

    X, _ = _blobs(9000, d=6, k=5, std=2.5, dtype=dtype)
    X = (X * np.arange(1, 7) + 40).astype(dtype)  # columns that standardising changes
    budget = f"{4000 * 6 * np.dtype(dtype).itemsize}B"
    params = {"algorithm": "minibatch", "init": "k-means++", "random_state": 11}
    with dask.config.set({"kmeans_dask.minibatch-pool-bytes": budget}):
        rate = pool_rate(9000, 6, np.dtype(dtype), 5, 1024)
        assert rate == pytest.approx(4000 / 9000)
        for scale in (False, True):
            fits, reads_per_fit = [], []
            for pool in (None, PoolRequest(11, rate)):
                reads: list[int] = []
                bs = _streamed(X, reads, pool)
                assert len(reads) == 4  # the summary pass
                if scale:
                    n, mean, m2 = bs.moments()
                    bs = bs.scaled(Affine(mean, np.sqrt(m2 / n)))
                km = KMeans(5, **params).fit(bs)
                reads_per_fit.append(len(reads) - 4)
                fits.append((km, np.asarray(km.labels_.compute())))
                assert km.init_info_["pool_passes"] == (1 if pool is None else 0)
            assert reads_per_fit == [8, 4]  # pool + assignment, then the assignment only
            (a, la), (b, lb) = fits
            assert 3000 < a.init_info_["pool_rows"] == b.init_info_["pool_rows"] < 5000
            np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
            np.testing.assert_array_equal(la, lb)
            assert a.inertia_ == b.inertia_ and a.n_steps_ == b.n_steps_
    # the persisted blocks' own draw: the same centres (scaled as the second fit above)
    ref = KMeans(5, **params)
    with dask.config.set({"kmeans_dask.minibatch-pool-bytes": budget}):
        Xs = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(dtype)
        ref.fit(Xs)
    np.testing.assert_allclose(ref.cluster_centers_, b.cluster_centers_, rtol=1e-3, atol=1e-3)


def test_a_sweep_draws_its_pool_once():
    """The K of a mini-batch sweep share one pool (the same seed and rate), drawn once
    although the fits run concurrently, or not at all when the summary pass drew it."""
    from kmeans_dask.engine.minibatch import pool_rate
    from kmeans_dask.engine.pool import PoolRequest

    X, y = _blobs(9000, d=4, k=4, std=0.8)
    out = []
    with dask.config.set({"kmeans_dask.minibatch-pool-bytes": f"{5000 * 4 * 8}B"}):
        for pool in (None, PoolRequest(5, pool_rate(9000, 4, X.dtype, 5, 1024))):
            reads: list[int] = []
            bs = _streamed(X, reads, pool)
            res = sweep_k(
                bs, range(2, 6), algorithm="minibatch", silhouette_sample_size=500, random_state=5
            )
            assert list(bs.pools) == [(5, pytest.approx(5000 / 9000))]
            out.append((len(reads), res))
    (reads_a, a), (reads_b, b) = out
    assert reads_a - reads_b == 4  # one pass of the 4 blocks for all four K
    cols = ["k", "inertia", "silhouette_sample"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols], check_exact=True)
    assert b.k == 4 and adjusted_rand_score(y, np.asarray(b.model.labels_.compute())) == 1
