"""Segment profiles: the kernel's partial/merge/finalize against numpy, and the job's
``profiles.parquet`` / ``profiles.md`` / ``profiles.png`` against pandas on the input joined
with the written assignments, persisted and streamed."""

from __future__ import annotations

import numpy as np
import pytest

from kmeans_dask.kernels.profile import (
    QUANTILES,
    Binning,
    finalize_profile,
    merge_profiles,
    profile_partial,
)

# --------------------------------------------------------------------------- kernel


def _data(rng, n=3000, d=3, K=4):
    X = rng.normal(size=(n, d)) * [1.0, 10.0, 0.01] + [5.0, -200.0, 0.0]
    labels = rng.integers(0, K, n)
    labels[:K] = np.arange(K)  # no empty segment
    return X, labels


def _binning(X, bins=64):
    mean, scale = X.mean(axis=0), X.std(axis=0)
    return Binning(scale, mean, X.min(axis=0), X.max(axis=0), bins), (X - mean) / scale


def test_merged_block_partials_equal_the_partial_of_all_rows(rng):
    X, labels = _data(rng)
    binning, Xs = _binning(X)
    whole = profile_partial(Xs, labels, 4, binning)
    cuts = [0, 1, 700, 701, 2000, 3000]  # includes a one-row block
    acc = profile_partial(Xs[:0], labels[:0], 4, binning)  # an empty block merges as nothing
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        acc = merge_profiles(acc, profile_partial(Xs[a:b], labels[a:b], 4, binning))
    np.testing.assert_array_equal(acc.count, whole.count)
    np.testing.assert_array_equal(acc.hist, whole.hist)
    np.testing.assert_array_equal(acc.vmin, whole.vmin)
    np.testing.assert_array_equal(acc.vmax, whole.vmax)
    np.testing.assert_allclose(acc.mean, whole.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.m2, whole.m2, rtol=1e-10)


def test_finalized_profile_matches_numpy_per_segment(rng):
    X, labels = _data(rng)
    binning, Xs = _binning(X, bins=50)
    p = profile_partial(Xs, labels, 4, binning)
    ids = np.array([7, 2, 9, 0])  # stable IDs: raw cluster k is segment ids[k]
    st = finalize_profile(p, binning, ids)
    assert st.ids.tolist() == [0, 2, 7, 9]
    assert st.size.sum() == len(X) and np.isclose(st.share.sum(), 1.0)
    for row, seg in enumerate(st.ids):
        rows = X[labels == np.flatnonzero(ids == seg)[0]]
        assert st.size[row] == len(rows)
        np.testing.assert_allclose(st.mean[row], rows.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(st.std[row], rows.std(axis=0, ddof=1), rtol=1e-9)
        np.testing.assert_array_equal(st.vmin[row], rows.min(axis=0))
        exact = np.quantile(rows, QUANTILES, axis=0).T  # (d, q)
        err = np.abs(st.quantiles[row] - exact)
        assert (err <= binning.width[:, None] * (1 + 1e-9)).all()
        # the bound is not vacuous: a coarser histogram is further off
    np.testing.assert_allclose(st.overall_mean, X.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(st.overall_std, X.std(axis=0, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(st.z, (st.mean - X.mean(axis=0)) / X.std(axis=0, ddof=1), rtol=1e-9)


def test_quantile_error_shrinks_with_the_bins_and_stays_within_one_bin(rng):
    X = rng.exponential(size=(5000, 1))
    labels = np.zeros(5000, dtype=np.int64)
    exact = np.quantile(X[:, 0], QUANTILES)
    errs = []
    for bins in (4, 16, 256):
        binning = Binning.identity(X.min(axis=0), X.max(axis=0), bins)
        st = finalize_profile(profile_partial(X, labels, 1, binning), binning)
        err = np.abs(st.quantiles[0, 0] - exact).max()
        assert err <= binning.width[0]
        errs.append(err)
    assert errs[2] < errs[0]


def test_constant_feature_one_row_and_empty_segments():
    X = np.array([[1.0, 3.0], [2.0, 3.0], [4.0, 3.0]])
    labels = np.array([0, 0, 2])
    binning = Binning.identity(X.min(axis=0), X.max(axis=0), 8)
    st = finalize_profile(profile_partial(X, labels, 3, binning), binning)
    assert st.size.tolist() == [2, 0, 1]
    assert np.isnan(st.mean[1]).all() and np.isnan(st.quantiles[1]).all()
    assert np.isnan(st.std[2]).all()  # one row: ddof=1 std is undefined, as in pandas
    assert st.z[0, 1] == 0.0  # constant column: no standardized difference
    np.testing.assert_array_equal(st.quantiles[0, 1], 3.0)
    np.testing.assert_array_equal(st.quantiles[2, 0], 4.0)
