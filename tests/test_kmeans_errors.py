"""Bad parameters and bad input: each a clear error that names what is wrong."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from kmeans_dask import InputError, InvalidParameterError, KMeans
from kmeans_dask.validation import max_abs_limit


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(100, 3))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"n_clusters": 0},
            r"'n_clusters' parameter of KMeans must be an int in the range \[1, inf\). Got 0",
        ),
        ({"n_clusters": 2.5}, r"'n_clusters' parameter of KMeans must be an int"),
        ({"init": "kmeans++"}, r"'init' parameter of KMeans must be one of 'k-means\|\|'"),
        ({"max_iter": 0}, r"'max_iter' parameter of KMeans must be an int in the range \[1, inf\)"),
        ({"tol": -1.0}, r"'tol' parameter of KMeans must be a float in the range \[0, inf\)"),
        ({"n_init": 0}, r"'n_init' parameter"),
        ({"init_rounds": 0}, r"'init_rounds' parameter"),
        (
            {"oversampling_factor": 0.0},
            r"'oversampling_factor' parameter of KMeans must be a float in the range \(0, inf\)",
        ),
        ({"random_state": "seed"}, r"'random_state' parameter"),
    ],
)
def test_invalid_parameters_name_the_parameter(X, params, match):
    km = KMeans(**params)
    with pytest.raises(InvalidParameterError, match=match):
        km.fit(X)
    assert km.get_params()[next(iter(params))] == params[next(iter(params))]  # untouched


def test_explicit_init_of_wrong_shape(X):
    with pytest.raises(ValueError, match=r"'init' must have shape \(n_clusters, n_features\)"):
        KMeans(2, init=np.zeros((3, 3))).fit(X)


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinity")])
@pytest.mark.parametrize("kind", ["numpy", "dask", "frame"])
def test_non_finite_values_name_the_column(X, value, word, kind, backend):
    X = X.copy()
    X[17, 1] = value
    if kind == "numpy":
        data, col = X, "column 1"
    elif kind == "dask":
        data, col = da.from_array(X, chunks=30), "column 1"
    else:
        data = dd.from_pandas(pd.DataFrame(X, columns=["age", "income", "tenure"]), npartitions=3)
        col = "column 'income'"
    with pytest.raises(InputError, match=rf"contains {word} in {col} \(1 values\)"):
        KMeans(2, random_state=0).fit(data)


def test_non_numeric_column_is_named():
    df = pd.DataFrame({"age": [1.0, 2.0, 3.0], "city": ["a", "b", "c"]})
    with pytest.raises(InputError, match=r"column 'city' has dtype .*not numeric"):
        KMeans(2).fit(df)
    with pytest.raises(InputError, match=r"column 'city' has dtype .*not numeric"):
        KMeans(2).fit(dd.from_pandas(df, npartitions=1))


def test_non_numeric_array():
    with pytest.raises(InputError, match="not numeric"):
        KMeans(2).fit(np.array([["a", "b"], ["c", "d"]]))


def test_more_clusters_than_samples(X, backend):
    with pytest.raises(ValueError, match=r"n_samples=100 should be >= n_clusters=101"):
        KMeans(101).fit(X)
    with pytest.raises(ValueError, match=r"n_samples=100 should be >= n_clusters=101"):
        KMeans(101).fit(da.from_array(X, chunks=40))


def test_empty_input(backend):
    with pytest.raises(InputError, match=r"Found array with 0 sample\(s\)"):
        KMeans(2).fit(np.empty((0, 3)))
    with pytest.raises(InputError, match=r"Found array with 0 sample\(s\)"):
        KMeans(2).fit(da.zeros((0, 3), chunks=10))
    empty = dd.from_pandas(pd.DataFrame({"a": [1.0]}), npartitions=1)
    with pytest.raises(InputError, match=r"Found array with 0 sample\(s\)"):
        KMeans(1).fit(empty[empty.a > 5])


def test_one_dimensional_input_is_rejected():
    with pytest.raises(InputError, match=r"expected a 2-D array.*reshape\(-1, 1\)"):
        KMeans(2).fit(np.arange(10.0))


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_fewer_distinct_points_than_clusters_warns(init, backend):
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), 20, axis=0)
    with pytest.warns(
        ConvergenceWarning,
        match=r"Number of distinct clusters \(3\) found smaller than n_clusters \(5\)",
    ):
        km = KMeans(5, init=init, random_state=0).fit(X)
    assert np.isfinite(km.cluster_centers_).all()
    assert km.inertia_ == 0.0


def test_bad_sample_weight(X):
    with pytest.raises(InputError, match="sample_weight must be 1-D with one value per row"):
        KMeans(2).fit(X, sample_weight=np.ones(5))
    w = np.ones(100)
    w[3] = -1
    with pytest.raises(InputError, match=r"sample_weight has 1 negative or non-finite"):
        KMeans(2).fit(X, sample_weight=w)
    with pytest.raises(InputError, match="sample_weight sums to 0"):
        KMeans(2).fit(X, sample_weight=np.zeros(100))


def test_predict_checks(X):
    with pytest.raises(NotFittedError):
        KMeans(2).predict(X)
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but KMeans is expecting 3"):
        km.predict(X[:, :2])
    with pytest.raises(ValueError, match="NaN or infinity"):
        km.predict(np.full((2, 3), np.nan))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    kmf = KMeans(2, random_state=0).fit(df)
    with pytest.raises(InputError, match=r"no column\(s\) \['c'\]"):
        kmf.predict(df.drop(columns="c"))


# ------------------------------------------------------------------ values too large to square


@pytest.mark.parametrize("kind", ["numpy", "dask", "frame"])
def test_values_whose_squares_overflow_name_the_column(X, kind, backend):
    # 1e200 squared is beyond float64: before, inertia_ came out as inf
    X = X.copy()
    X[17, 2] = 1e200
    if kind == "numpy":
        data, col = X, "column 2"
    elif kind == "dask":
        data, col = da.from_array(X, chunks=30), "column 2"
    else:
        data = dd.from_pandas(pd.DataFrame(X, columns=["age", "income", "tenure"]), npartitions=3)
        col = "column 'tenure'"
    msg = rf"too large to square and sum in {col} \(max \|value\| 1e\+200\)"
    with pytest.raises(InputError, match=msg):
        KMeans(2, random_state=0).fit(data)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_up_to_the_limit_give_finite_results(dtype, backend):
    # the worst case of the bound: one cluster, rows at +M and -M on every feature, so every
    # squared distance is d * M**2 and the inertia n * d * M**2
    n, d = 64, 3
    limit = max_abs_limit(dtype, d, n)
    signs = np.where(np.arange(n)[:, None] % 2 == 0, 1.0, -1.0) * np.ones((1, d))
    ok = (signs * 0.99 * limit).astype(dtype)
    km = KMeans(1, random_state=0, max_iter=5).fit(ok)
    assert np.isfinite(km.inertia_) and km.inertia_ > 0
    assert np.isfinite(km.transform(ok)).all()
    assert np.isfinite(km.score(ok))
    too_large = (signs * 1.01 * limit).astype(dtype)
    with pytest.raises(InputError, match=rf"with {d} feature\(s\), {n} rows.*in {np.dtype(dtype)}"):
        KMeans(1, random_state=0).fit(too_large)


def test_limit_depends_on_dtype_and_number_of_features():
    f64, f32 = np.finfo(np.float64).max, np.finfo(np.float32).max
    assert max_abs_limit(np.float64, 1) == pytest.approx(np.sqrt(f64 / 4))
    assert max_abs_limit(np.float64, 25, 100) == pytest.approx(np.sqrt(f64 / (4 * 25 * 100)))
    assert max_abs_limit(np.float32, 16) == pytest.approx(np.sqrt(f32 / (4 * 16)))
    # float32 distances are summed in float64: the rows do not lower float32's bound
    assert max_abs_limit(np.float32, 16, 10**9) == max_abs_limit(np.float32, 16)


def test_predict_and_transform_refuse_values_too_large(X, backend):
    km = KMeans(2, random_state=0).fit(X)
    big = X.copy()
    big[3, 1] = -1e300
    for method in (km.predict, km.transform):
        with pytest.raises(InputError, match=r"too large to square and sum in column 1"):
            method(big)  # in memory: at once
        lazy = method(da.from_array(big, chunks=25))
        with pytest.raises(InputError, match=r"too large to square and sum in column 1"):
            lazy.compute()  # dask: when computed
    # a float32 model compares in float32: 1e30 (fine in float64) is refused, not made inf
    km32 = KMeans(2, random_state=0).fit(X.astype(np.float32))
    big = X.copy()
    big[0, 0] = 1e30
    with pytest.raises(InputError, match=r"column 0 \(max \|value\| 1e\+30\).*in float32"):
        km32.predict(big)
