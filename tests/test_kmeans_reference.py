"""KMeans against scikit-learn as the reference."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler as SKScaler

from kmeans_dask import KMeans

RTOL = {np.float64: 1e-6, np.float32: 1e-4}


def _overlapping(n=3000, d=6, k=5, seed=0, dtype=np.float64):
    X, _ = make_blobs(n, n_features=d, centers=k, cluster_std=3.0, random_state=seed)
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "chunks",
    [None, 1000, 777, 1],  # numpy, even, ragged last chunk, one-row chunks
    ids=["numpy", "even", "ragged", "one-row"],
)
def test_lloyd_matches_sklearn_from_same_init(dtype, chunks, backend, keep_chunks):
    n = 120 if chunks == 1 else 3000
    X = _overlapping(n=n, dtype=dtype)
    init = X[:5].copy()
    ref = SKKMeans(5, init=init, n_init=1, algorithm="lloyd", tol=0, max_iter=300).fit(X)
    data = X if chunks is None else da.from_array(X, chunks=(chunks, -1))
    ours = KMeans(5, init=init, tol=0, max_iter=300).fit(data)
    assert ours.cluster_centers_.dtype == dtype
    np.testing.assert_allclose(
        ours.cluster_centers_, ref.cluster_centers_, rtol=RTOL[dtype], atol=RTOL[dtype]
    )
    np.testing.assert_array_equal(ours.labels_.compute(), ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=RTOL[dtype])


@pytest.mark.parametrize("tol", [1e-4, 1e-2])
def test_tol_has_sklearn_meaning(tol):
    """Same number of iterations as scikit-learn for a tolerance relative to the variance."""
    X = _overlapping(n=4000, d=4, k=6, seed=3) * 50.0  # variance far from 1
    init = X[:6].copy()
    ref = SKKMeans(6, init=init, n_init=1, tol=tol).fit(X)
    ours = KMeans(6, init=init, tol=tol).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-9)


def test_kmeans_parallel_on_blobs_is_exact_and_near_sklearn_best(backend):
    X, y = make_blobs(20000, n_features=8, centers=7, cluster_std=1.0, random_state=7)
    Xd = da.from_array(X, chunks=(3000, -1))
    ours = KMeans(7, random_state=0).fit(Xd)
    ref = SKKMeans(7, n_init=10, random_state=0).fit(X)
    assert adjusted_rand_score(y, ours.labels_.compute()) == 1.0
    assert ours.inertia_ <= ref.inertia_ * 1.01
    assert ours.init_info_["n_passes"] == 5 + 1  # init_rounds + 1


def test_unbalanced_blobs_within_one_percent_of_sklearn_best():
    rs = np.random.default_rng(0)
    sizes = [20000, 5000, 1000, 300, 100, 50]
    centers = rs.normal(scale=8, size=(len(sizes), 5))
    X = np.concatenate([c + rs.normal(size=(s, 5)) for c, s in zip(centers, sizes, strict=True)])
    ours = KMeans(6, random_state=1).fit(X)
    ref = SKKMeans(6, n_init=10, random_state=0).fit(X)
    assert ours.inertia_ <= ref.inertia_ * 1.01


def test_digits_in_sklearn_range():
    X, y = load_digits(return_X_y=True)
    X = SKScaler().fit_transform(X)
    ours_inertia, ours_ari, ref_inertia, ref_ari = [], [], [], []
    for seed in range(5):
        ours = KMeans(10, n_init=4, random_state=seed).fit(X)
        ref = SKKMeans(10, n_init=4, random_state=seed).fit(X)
        ours_inertia.append(ours.inertia_)
        ours_ari.append(adjusted_rand_score(y, ours.labels_.compute()))
        ref_inertia.append(ref.inertia_)
        ref_ari.append(adjusted_rand_score(y, ref.labels_))
    # each of our runs lands within the spread of scikit-learn's runs (2% slack on inertia)
    assert max(ours_inertia) <= max(ref_inertia) * 1.02
    assert min(ours_ari) >= min(ref_ari) - 0.1
    assert np.mean(ours_inertia) <= np.mean(ref_inertia) * 1.02


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_same_seed_same_chunking_bit_identical(init, backend):
    X = _overlapping(n=5000, d=4, k=6, seed=2)
    Xd = da.from_array(X, chunks=(1200, -1))
    a = KMeans(6, init=init, random_state=42).fit(Xd)
    b = KMeans(6, init=init, random_state=42).fit(Xd)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.inertia_ == b.inertia_
    c = KMeans(6, init=init, random_state=43).fit(Xd)
    assert not np.array_equal(a.cluster_centers_, c.cluster_centers_)


def test_integer_weights_equal_repeated_rows(backend):
    X = _overlapping(n=800, d=3, k=4, seed=5)
    w = np.random.default_rng(0).integers(0, 4, size=X.shape[0])
    Xr = np.repeat(X, w, axis=0)
    init = X[w > 0][:4]
    a = KMeans(4, init=init, tol=0).fit(X, sample_weight=w.astype(float))
    b = KMeans(4, init=init, tol=0).fit(Xr)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-10)
    ref = SKKMeans(4, init=init, n_init=1, tol=0).fit(X, sample_weight=w)
    np.testing.assert_allclose(a.cluster_centers_, ref.cluster_centers_, rtol=1e-6)
    # k-means|| init also honours the weights: it finds scikit-learn's weighted solution
    Xb, _ = make_blobs(3000, n_features=3, centers=4, random_state=1)
    wb = np.random.default_rng(1).integers(1, 3, size=Xb.shape[0]).astype(float)
    km = KMeans(4, random_state=0).fit(da.from_array(Xb, chunks=700), sample_weight=wb)
    skw = SKKMeans(4, n_init=10, random_state=0).fit(Xb, sample_weight=wb)
    assert adjusted_rand_score(skw.labels_, km.labels_.compute()) == 1.0
    np.testing.assert_allclose(km.inertia_, skw.inertia_, rtol=1e-9)


def test_numpy_dask_array_and_dataframe_agree(backend):
    import dask.dataframe as dd
    import pandas as pd

    X = _overlapping(n=3000, d=4, k=5, seed=9)
    init = X[:5].copy()
    df = pd.DataFrame(X, columns=list("abcd"))
    df["segment_name"] = "x"  # a non-feature column, not selected
    ddf = dd.from_pandas(df, npartitions=4)
    r_np = KMeans(5, init=init).fit(X)
    r_da = KMeans(5, init=init).fit(da.from_array(X, chunks=(700, -1)))
    r_df = KMeans(5, init=init).fit(ddf[list("abcd")])
    for r in (r_da, r_df):
        np.testing.assert_allclose(r.cluster_centers_, r_np.cluster_centers_, rtol=1e-10)
        np.testing.assert_array_equal(r.labels_.compute(), r_np.labels_.compute())
    assert list(r_df.feature_names_in_) == list("abcd")
    np.testing.assert_array_equal(r_df.predict(ddf).compute(), r_np.predict(X))


def test_objective_never_increases(backend):
    X = _overlapping(n=6000, d=5, k=8, seed=11)
    km = KMeans(8, init="random", random_state=3, tol=0).fit(da.from_array(X, chunks=1500))
    inertias = np.array([h.inertia for h in km.history_])
    assert len(inertias) >= 3
    # exact inertia per iteration: allow only rounding-level growth
    assert np.all(np.diff(inertias) <= 1e-12 * inertias[:-1])
    assert km.inertia_ <= inertias[-1] * (1 + 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_iterations_inertia_is_that_of_its_assignment(dtype, backend):
    """history_[m].inertia is the inertia of the assignment to the centres that iteration
    m + 1 started from (those after m iterations), computed here with numpy: exact in the
    first iteration, from the partial sums later (within 1e-12 of the data's sum of
    squares here: data 100 from the origin, spread ~10)."""
    X = _overlapping(n=5000, d=6, k=6, seed=8, dtype=dtype) + 100.0  # off the origin
    init = X[:6].copy()
    Xd = da.from_array(X, chunks=(1300, -1))
    full = KMeans(6, init=init, tol=0, max_iter=6).fit(Xd)
    sum_sq = ((X.astype(np.float64) - X.astype(np.float64).mean(0)) ** 2).sum()
    for m, h in enumerate(full.history_):
        C = init if m == 0 else KMeans(6, init=init, tol=0, max_iter=m).fit(Xd).cluster_centers_
        D = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)
        exact = D.min(axis=1).sum()
        assert abs(h.inertia - exact) <= 1e-12 * sum_sq, (m, h.inertia, exact)
        if m == 0:
            assert h.inertia == pytest.approx(exact, rel=1e-13)


def test_inertia_is_exact_far_from_origin(backend):
    X = _overlapping(n=4000, d=6, k=4, seed=4) + 1e4
    km = KMeans(4, random_state=0).fit(da.from_array(X, chunks=1000))
    C = km.cluster_centers_
    labels = km.labels_.compute()
    direct = ((X - C[labels]) ** 2).sum()
    np.testing.assert_allclose(km.inertia_, direct, rtol=1e-12)
    # and the labels are the true nearest centres
    D = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, D.argmin(1))


def test_predict_transform_score_match_sklearn_given_same_centres():
    X = _overlapping(n=2000, d=4, k=5, seed=6)
    init = X[:5].copy()
    ours = KMeans(5, init=init, tol=0).fit(X)
    ref = SKKMeans(5, init=init, n_init=1, tol=0).fit(X)
    Xn = _overlapping(n=500, d=4, k=5, seed=8)
    np.testing.assert_array_equal(ours.predict(Xn), ref.predict(Xn))
    np.testing.assert_allclose(ours.transform(Xn), ref.transform(Xn), rtol=1e-6)
    np.testing.assert_allclose(ours.score(Xn), ref.score(Xn), rtol=1e-9)
    lazy = ours.predict(da.from_array(Xn, chunks=128))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), ref.predict(Xn))
