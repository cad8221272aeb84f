"""Property tests of the pure KNN kernels: per-block top-k, merge, vote."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_dask.kernels import knn as kk
from kmeans_dask.kernels import knn_vote as kv


def brute(Q: np.ndarray, R: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: all exact squared distances, ordered by (distance, index)."""
    D = ((Q.astype(np.float64)[:, None, :] - R.astype(np.float64)[None, :, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(R.shape[0]), D.shape), D), axis=1)[:, :k]
    return np.take_along_axis(D, order, axis=1), order


def problem(draw, max_rows: int = 40):
    """Small query/reference sets, continuous or on a coarse grid (many exact ties)."""
    d = draw(st.integers(1, 5))
    n_ref = draw(st.integers(1, max_rows))
    n_q = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    grid = draw(st.booleans())
    shift = draw(st.sampled_from([0.0, 1e3]))
    rng = np.random.default_rng(seed)
    if grid:
        R = rng.integers(-2, 3, (n_ref, d)).astype(np.float64)
        Q = rng.integers(-2, 3, (n_q, d)).astype(np.float64)
    else:
        R = rng.standard_normal((n_ref, d))
        Q = rng.standard_normal((n_q, d))
    return Q + shift, R + shift


@st.composite
def topk_case(draw):
    Q, R = problem(draw)
    k = draw(st.integers(1, R.shape[0] + 3))
    return Q, R, k


def _strip(d2: np.ndarray, idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    m = min(n, d2.shape[1])
    return d2[:, :m], idx[:, :m]


@settings(max_examples=60, deadline=None)
@given(topk_case())
def test_block_topk_is_exact_with_ties_by_index(case):
    Q, R, k = case
    d2, idx, stats = kk.block_topk(Q, R, k, R.mean(axis=0), offset=100)
    ref_d, ref_i = brute(Q, R, k)
    m = min(k, R.shape[0])
    np.testing.assert_array_equal(idx[:, :m] - 100, ref_i)
    np.testing.assert_array_equal(d2[:, :m], ref_d)  # the same exact loop: bit-identical
    assert (idx[:, m:] == kk.PAD_INDEX).all() and np.isinf(d2[:, m:]).all()
    assert sum(stats.values()) == Q.shape[0]


@settings(max_examples=40, deadline=None)
@given(topk_case())
def test_exact_topk_matches_brute(case):
    Q, R, k = case
    d2, idx = kk.exact_topk(Q, R, k)
    ref_d, ref_i = brute(Q, R, k)
    m = min(k, R.shape[0])
    np.testing.assert_array_equal(idx[:, :m], ref_i)
    np.testing.assert_array_equal(d2[:, :m], ref_d)


@st.composite
def split_case(draw):
    Q, R = problem(draw, max_rows=60)
    k = draw(st.integers(1, R.shape[0]))
    cuts: list[int] = []
    if R.shape[0] > 1:
        n_cuts = draw(st.integers(0, min(6, R.shape[0] - 1)))
        rows = st.integers(1, R.shape[0] - 1)
        cuts = sorted(draw(st.sets(rows, min_size=n_cuts, max_size=n_cuts)))
    order_seed = draw(st.integers(0, 1000))
    return Q, R, k, cuts, order_seed


@settings(max_examples=60, deadline=None)
@given(split_case())
def test_merge_of_blocks_equals_whole_in_any_order(case):
    """Chunked top-k (indices shifted by offsets) merged in any tree = unchunked top-k."""
    Q, R, k, cuts, order_seed = case
    mu = R.mean(axis=0)
    bounds = [0, *cuts, R.shape[0]]
    labels = np.arange(R.shape[0]) * 10
    parts = []
    for a, b in itertools.pairwise(bounds):
        d2, idx, _ = kk.block_topk(Q, np.ascontiguousarray(R[a:b]), k, mu, offset=a)
        parts.append((d2, idx, kk.gather_values(labels[a:b], idx, a, -1)))
    rng = np.random.default_rng(order_seed)
    while len(parts) > 1:  # merge random pairs/triples until one list is left
        rng.shuffle(parts)
        m = int(rng.integers(2, 4))
        parts = [kk.merge_topk(parts[:m], k), *parts[m:]]
    d2, idx, lab = parts[0]
    ref_d, ref_i = brute(Q, R, k)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(d2, ref_d)
    np.testing.assert_array_equal(lab, ref_i * 10)


def test_fallback_passes_settle_duplicates_at_the_cut():
    # 40 copies of each of 30 points: the k-th neighbour's duplicates straddle every heap
    rng = np.random.default_rng(0)
    R = np.repeat(rng.standard_normal((30, 4)), 40, axis=0)
    Q = R[::37] + 0.0
    _d2, idx, stats = kk.block_topk(Q, R, 15, R.mean(axis=0))
    _ref_d, ref_i = brute(Q, R, 15)
    np.testing.assert_array_equal(idx, ref_i)
    assert stats["scan"] > 0


def test_float32_pass_settles_continuous_data():
    rng = np.random.default_rng(1)
    R = rng.standard_normal((5000, 16))
    Q = rng.standard_normal((200, 16))
    _d2, idx, stats = kk.block_topk(Q, R, 15, R.mean(axis=0))
    assert stats == {"float32": 200, "float64": 0, "scan": 0}
    np.testing.assert_array_equal(idx, brute(Q, R, 15)[1])


def test_float32_data_is_exact_in_float64():
    rng = np.random.default_rng(2)
    R = rng.standard_normal((3000, 8)).astype(np.float32)
    Q = rng.standard_normal((100, 8)).astype(np.float32)
    d2, idx, _ = kk.block_topk(Q, R, 10, R.mean(axis=0, dtype=np.float64))
    ref_d, ref_i = brute(Q, R, 10)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(d2, ref_d, rtol=1e-14)  # numpy sums d=8 terms pairwise


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 8),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uniform", "distance"]),
)
def test_vote_ties_go_to_the_smallest_label(n_classes, k, seed, weights):
    rng = np.random.default_rng(seed)
    dist = np.sort(rng.choice([0.0, 0.5, 1.0, 2.0], size=(20, k)), axis=1)
    codes = rng.integers(0, n_classes, (20, k))
    proba, pred, share = kv.vote(dist, codes, n_classes, weights)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    best = proba.max(axis=1)
    for i in range(20):
        # smallest code among those within rounding of the best vote
        assert pred[i] == np.flatnonzero(np.isclose(proba[i], best[i], rtol=0, atol=1e-12))[0]
    np.testing.assert_array_equal(share, proba[np.arange(20), pred])


def test_distance_weights_zero_distance_rule():
    dist = np.array([[0.0, 0.0, 1.0], [0.5, 1.0, 2.0]])
    w = kv.neighbour_weights(dist, "distance")
    np.testing.assert_array_equal(w, [[1.0, 1.0, 0.0], [2.0, 1.0, 0.5]])
    _proba, pred, share = kv.vote(dist, np.array([[1, 1, 0], [0, 1, 1]]), 2, "distance")
    np.testing.assert_array_equal(pred, [1, 0])
    assert share[0] == 1.0
    target = np.array([[2.0, 4.0, 100.0], [1.0, 1.0, 1.0]])
    assert kv.neighbour_mean(dist, target, "distance")[0] == 3.0


@pytest.mark.parametrize("k", [1, 5, 20])
def test_candidates_cover_k(k):
    assert kk.n_candidates(k) >= k + 8
