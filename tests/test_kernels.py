"""Property tests of the pure per-chunk kernels against naive numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kmeans_dask.kernels import init as init_kernels
from kmeans_dask.kernels import lloyd as kernels
from kmeans_dask.kernels import moments
from kmeans_dask.kernels.streams import row_uniforms

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def data_and_centres(draw):
    n = draw(st.integers(1, 3000))
    d = draw(st.integers(1, 6))
    k = draw(st.integers(1, 7))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * draw(st.sampled_from([1.0, 100.0]))).astype(dtype)
    X += draw(st.sampled_from([0.0, 1e4])) if dtype == np.float64 else 0.0
    C = X[rng.integers(0, n, size=k)] + rng.normal(size=(k, d)).astype(dtype)
    w = rng.uniform(0, 3, size=n) if draw(st.booleans()) else None
    return X, C.astype(dtype), w


def _naive(X, C):
    return ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)


@settings(max_examples=60, deadline=None)
@given(data_and_centres())
def test_assign_matches_naive(case):
    X, C, w = case
    cs = kernels.CentreSet(C, X.mean(axis=0))
    labels, mind, inertia = kernels.assign(X, cs, w)
    D = _naive(X, C)
    best = D.min(axis=1)
    # exact distance to the chosen centre; the chosen centre is a nearest one up to rounding
    np.testing.assert_allclose(mind, D[np.arange(len(X)), labels], rtol=1e-12, atol=1e-9)
    tol = 1e-3 if X.dtype == np.float32 else 1e-7
    assert np.all(mind <= best + tol * (1 + best))
    wv = np.ones(len(X)) if w is None else w
    np.testing.assert_allclose(inertia, wv @ mind, rtol=1e-10)


@settings(max_examples=60, deadline=None)
@given(data_and_centres())
def test_inertia_from_the_sums_is_the_exact_inertia(case):
    """Without ``exact`` the E-step gives the same sums bit for bit; the exact inertia minus
    :func:`inertia_shift` of the sums is the data's sum of squares about the reference,
    whatever the centres (so one exact pass gives every later iteration's inertia)."""
    X, C, w = case
    mu = X.mean(axis=0)
    wv = np.ones(len(X)) if w is None else w
    sum_sq = wv @ ((X.astype(np.float64) - mu) ** 2).sum(axis=1)  # numpy, the reference
    rng = np.random.default_rng(len(X))
    for centres in (C, C + rng.normal(size=C.shape).astype(C.dtype)):
        cs = kernels.CentreSet(centres, mu)
        sums, wsum, inertia = kernels.lloyd_partials(X, cs, w)
        sums2, wsum2, zero = kernels.lloyd_partials(X, cs, w, exact=False)
        np.testing.assert_array_equal(sums2, sums)
        np.testing.assert_array_equal(wsum2, wsum)
        assert zero == 0.0
        shift = kernels.inertia_shift(centres, mu, sums, wsum)
        # rounding: that of the partial sums (values up to max|x|) times |c - mu|, as for
        # the centres the sums give; beside it the data's own sum of squares
        moved = np.linalg.norm(centres.astype(np.float64) - mu, axis=1)
        scale = np.abs(X).max() * (wsum @ moved) + sum_sq + inertia
        assert abs(sum_sq + shift - inertia) <= 1e-11 * scale


@settings(max_examples=40, deadline=None)
@given(data_and_centres(), st.integers(1, 5))
def test_partials_of_chunks_add_up_to_the_whole(case, n_chunks):
    X, C, w = case
    cs = kernels.CentreSet(C, X.mean(axis=0))
    whole = kernels.lloyd_partials(X, cs, w)
    bounds = np.linspace(0, len(X), n_chunks + 1).astype(int)
    parts = [
        kernels.lloyd_partials(X[a:b], cs, None if w is None else w[a:b])
        for a, b in itertools.pairwise(bounds)
    ]
    np.testing.assert_allclose(sum(p[0] for p in parts), whole[0], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(sum(p[1] for p in parts), whole[1], rtol=1e-12)
    np.testing.assert_allclose(sum(p[2] for p in parts), whole[2], rtol=1e-9)
    # and the partials are the per-cluster weighted sums of the assignment
    labels, _, _ = kernels.assign(X, cs, w)
    wv = np.ones(len(X)) if w is None else w
    np.testing.assert_allclose(whole[1], np.bincount(labels, wv, minlength=len(C)), rtol=1e-12)
    for j in range(len(C)):
        np.testing.assert_allclose(
            whole[0][j],
            (X[labels == j].astype(np.float64) * wv[labels == j, None]).sum(0),
            rtol=1e-9,
            atol=1e-6,
        )


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 200), st.integers(1, 4)), elements=finite),
    st.integers(1, 6),
)
def test_chan_merge_equals_numpy_variance(X, n_chunks):
    bounds = np.linspace(0, len(X), n_chunks + 1).astype(int)
    acc = (0, np.zeros(X.shape[1]), np.zeros(X.shape[1]))
    for a, b in itertools.pairwise(bounds):
        n, mean, m2, _, _, _ = moments.moments(X[a:b])
        acc = moments.merge_moments(acc, (n, mean, m2))
    n, mean, m2 = acc
    assert n == len(X)
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m2 / n, X.var(0), rtol=1e-8, atol=1e-6)


def test_moments_count_nan_and_inf_and_largest_value_per_column():
    X = np.zeros((5, 3))
    X[1, 2] = np.nan
    X[3, 0] = np.inf
    X[4, 0] = -np.inf
    X[2, 1] = -7.5
    X[0, 2] = 3.0
    _, _, _, n_nan, n_inf, max_abs = moments.moments(X)
    assert n_nan.tolist() == [0, 0, 1]
    assert n_inf.tolist() == [2, 0, 0]
    assert max_abs.tolist() == [0.0, 7.5, 3.0]  # finite values only


@given(st.integers(0, 2**40), st.integers(0, 10), st.integers(0, 1000), st.integers(0, 300))
def test_row_uniforms_do_not_depend_on_chunking(seed, stream, offset, n):
    whole = row_uniforms(seed, stream, 0, offset + n)
    np.testing.assert_array_equal(
        row_uniforms(seed, stream, offset, n), whole[offset:]
    )
    assert np.all((whole >= 0) & (whole < 1))


def test_kmeans_parallel_sample_superset_contains_every_sampled_row():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 3))
    d2 = rng.exponential(size=5000)
    u = rng.uniform(size=5000)
    oversampling = 20.0
    phi_total = 3 * d2.sum()  # as if two other chunks had twice this cost
    _, t, local, _ = init_kernels.kmeans_parallel_sample(X, None, d2, u, oversampling)
    truly = np.flatnonzero(u < oversampling * d2 / phi_total)
    chosen = local[t > phi_total]
    np.testing.assert_array_equal(np.sort(chosen), truly)
    # the superset is small: about l rows per chunk in expectation
    assert len(local) < 3 * oversampling


def test_kmeanspp_picks_distinct_rows_and_spreads():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [50, 0], [0, 50], [50, 50]], dtype=float)
    X = np.concatenate([c + rng.normal(size=(200, 2)) for c in centres])
    idx = init_kernels.kmeanspp(X, 4, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 4
    assert sorted((idx // 200).tolist()) == [0, 1, 2, 3]  # one seed per blob


def test_kmeanspp_never_picks_a_zero_weight_row_when_the_rest_coincide():
    # every weighted row is at the origin: the cost is 0 after the first centre, and the
    # next centre must still be a weighted row, not the zero-weight one listed first
    X = np.array([[100.0, 100.0]] + [[0.0, 0.0]] * 5)
    w = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    for seed in range(5):
        idx = init_kernels.kmeanspp(X, 3, np.random.default_rng(seed), w)
        assert 0 not in idx.tolist()


def test_weighted_lloyd_zero_weight_rows_are_ignored():
    X = np.array([[0.0], [1.0], [10.0], [11.0], [1000.0]])
    w = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    C, cost = init_kernels.weighted_lloyd(X, w, np.array([[0.0], [10.0]]))
    np.testing.assert_allclose(np.sort(C.ravel()), [0.5, 10.5])
    np.testing.assert_allclose(cost, 4 * 0.25)


def test_sq_distances_match_naive():
    rng = np.random.default_rng(2)
    X, C = rng.normal(size=(50, 4)), rng.normal(size=(6, 4))
    np.testing.assert_allclose(kernels.sq_distances(X, C), _naive(X, C), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 1023, 1025, 9000])
def test_lloyd_partials_multi_equal_each_set_alone_bit_for_bit(dtype, n):
    """The sweep's fused pass (every K still iterating, one read of each tile) gives each
    centre set exactly its own lloyd_partials without exact distances: sums and weights."""
    rng = np.random.default_rng(n)
    X = (rng.normal(size=(n, 7)) * 3 + 50).astype(dtype)  # far from the origin
    w = rng.random(n) if n % 2 else None
    mu = X.mean(axis=0).astype(np.float64)
    css = [kernels.CentreSet(X[rng.integers(0, n, size=k)], mu) for k in (2, 5, 1, 9, 3)]
    got = kernels.lloyd_partials_multi(X, css, w)
    assert len(got) == len(css)
    for cs, (sums, wsum, inertia) in zip(css, got, strict=True):
        s1, w1, i1 = kernels.lloyd_partials(X, cs, w, exact=False)
        assert sums.shape == (cs.k, 7)
        np.testing.assert_array_equal(sums, s1)
        np.testing.assert_array_equal(wsum, w1)
        assert inertia == i1 == 0.0
        np.testing.assert_allclose(wsum.sum(), n if w is None else w.sum())
