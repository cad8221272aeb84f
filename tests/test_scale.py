"""StandardScaler against scikit-learn's."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler as SKScaler

from kmeans_dask import InputError, StandardScaler


@pytest.fixture
def X():
    rng = np.random.default_rng(3)
    X = rng.normal(loc=[1e4, -3.0, 0.0, 50.0], scale=[5.0, 0.01, 1.0, 100.0], size=(5000, 4))
    X[:, 2] = 7.25  # a constant column
    return X


@pytest.mark.parametrize("chunks", [None, 5000, 999, 1])
def test_matches_sklearn(X, chunks, backend):
    data = X if chunks is None else da.from_array(X if chunks != 1 else X[:200], chunks=(chunks, 4))
    ref_X = X if chunks != 1 else X[:200]
    ref = SKScaler().fit(ref_X)
    ours = StandardScaler().fit(data)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.var_, ref.var_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.scale_, ref.scale_, rtol=1e-9)
    assert ours.scale_[2] == 1.0  # constant column
    assert ours.n_samples_seen_ == ref.n_samples_seen_
    out = ours.transform(data)
    out = out.compute() if hasattr(out, "compute") else out
    np.testing.assert_allclose(out, ref.transform(ref_X), rtol=1e-9, atol=1e-9)
    back = ours.inverse_transform(out)
    np.testing.assert_allclose(back, ref_X, rtol=1e-12, atol=1e-9)


def test_float32_stays_float32(X):
    X32 = X.astype(np.float32)
    sc = StandardScaler().fit(da.from_array(X32, chunks=1000))
    out = sc.transform(da.from_array(X32, chunks=1000))
    assert out.dtype == np.float32
    assert sc.transform(X32).dtype == np.float32
    np.testing.assert_allclose(out.compute(), SKScaler().fit_transform(X32), rtol=1e-3, atol=1e-4)


def test_dataframe_keeps_names(X):
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    ddf = dd.from_pandas(df, npartitions=3)
    sc = StandardScaler().fit(ddf)
    assert list(sc.feature_names_in_) == ["a", "b", "c", "d"]
    out = sc.transform(ddf).compute()
    np.testing.assert_allclose(out.to_numpy(), SKScaler().fit_transform(X), rtol=1e-9, atol=1e-9)
    assert list(sc.get_feature_names_out()) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (-np.inf, "infinity")])
def test_non_finite_names_column(X, value, word):
    df = pd.DataFrame(X, columns=["age", "income", "tenure", "spend"])
    df.loc[10, "spend"] = value
    with pytest.raises(InputError, match=rf"contains {word} in column 'spend'"):
        StandardScaler().fit(dd.from_pandas(df, npartitions=2))
    with pytest.raises(InputError, match=rf"contains {word} in column 3"):
        StandardScaler().fit(df.to_numpy())


def test_with_mean_with_std_flags(X):
    ours = StandardScaler(with_mean=False).fit(X)
    ref = SKScaler(with_mean=False).fit(X)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-9)
    assert ours.mean_ is None
    ours = StandardScaler(with_std=False).fit(X)
    ref = SKScaler(with_std=False).fit(X)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-9, atol=1e-9)


def test_values_whose_squares_overflow_name_the_column(X):
    # the variance sums squared deviations in float64: 1e200 would make scale_ inf
    df = pd.DataFrame(X, columns=["age", "income", "tenure", "spend"])
    df.loc[10, "income"] = 1e200
    with pytest.raises(InputError, match=r"too large to square and sum in column 'income'"):
        StandardScaler().fit(dd.from_pandas(df, npartitions=2))
    with pytest.raises(InputError, match=r"too large to square and sum in column 1"):
        StandardScaler().fit(df.to_numpy())


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_transform_refuses_non_finite(X, value, backend):
    sc = StandardScaler().fit(X)
    bad = X.copy()
    bad[1234, 3] = value
    msg = r"contains NaN or infinity in column\(s\) \[3\] \(1 row\(s\), the first is row 1234\)"
    with pytest.raises(InputError, match=msg):
        sc.transform(bad)  # in memory: at once
    with pytest.raises(InputError, match=msg.replace(r"\[3\]", r"\['spend'\]")):
        sc.transform(pd.DataFrame(bad, columns=["age", "income", "tenure", "spend"]))
    lazy = sc.transform(da.from_array(bad, chunks=(500, 4)))
    with pytest.raises(InputError, match=msg):
        lazy.compute()  # dask: when computed, rows counted over the whole array
