"""The pruned exact KNN search (landmark clusters per reference block): the same neighbours,
ties and distances as the plain kernel and as scikit-learn's brute force, with most distances
skipped on clustered data and the plain kernel taken where pruning cannot pay."""

from __future__ import annotations

import logging

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

from kmeans_dask import KNeighborsScorer
from kmeans_dask.exceptions import InvalidParameterError
from kmeans_dask.kernels.knn import block_topk
from kmeans_dask.kernels.knn_index import CLUSTER_ROWS, MIN_CLUSTERS, build_index
from kmeans_dask.kernels.knn_pruned import pruned_topk

D = 6
SMALLEST = CLUSTER_ROWS * MIN_CLUSTERS  # rows of the smallest block that gets an index


def _blobs(n: int, d: int, seed: int, std: float = 0.4, centres: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    C = rng.uniform(-10, 10, (centres, d))
    return C[rng.integers(0, centres, n)] + std * rng.standard_normal((n, d))


@pytest.fixture(scope="module")
def blobs():
    X = _blobs(20_600, D, 5)
    rng = np.random.default_rng(6)
    R, Q = X[:20_000], X[20_000:]
    y = rng.choice(np.array([-1, 3, 4, 9]), R.shape[0])
    t = rng.standard_normal(R.shape[0])
    return R, Q, y, t


# --------------------------------------------------------------------------- kernel


def test_index_groups_every_row_within_its_radius():
    X = _blobs(9_000, D, 1)
    mu = X.mean(axis=0)
    ix = build_index(X, mu)
    assert ix.n_clusters >= MIN_CLUSTERS
    np.testing.assert_array_equal(np.sort(ix.order), np.arange(X.shape[0]))
    assert ix.starts[0] == 0 and ix.starts[-1] == X.shape[0]
    assert (np.diff(ix.starts) > 0).all()
    for c in range(ix.n_clusters):
        rows = X[ix.order[ix.starts[c] : ix.starts[c + 1]]]
        assert np.linalg.norm(rows - ix.centroids[c], axis=1).max() <= ix.radii[c]
    np.testing.assert_array_equal(ix.rows, (-2.0 * (X[ix.order] - mu)).astype(np.float32))
    assert build_index(X[: SMALLEST - 1], mu) is None  # too few rows: no index


@pytest.mark.parametrize("mode", ["pruned", "auto"])
@pytest.mark.parametrize(
    "kind", ["blobs", "blobs-float32", "duplicates", "grid-ties", "gaussian", "k-large"]
)
def test_pruned_kernel_equals_plain_kernel(kind, mode):
    rng = np.random.default_rng(2)
    k, dtype = 7, np.float64
    if kind.startswith("blobs"):
        X = _blobs(10_300, D, 3)
        dtype = np.float32 if kind.endswith("float32") else dtype
    elif kind == "duplicates":  # every row four times: ties straddle every cut
        X = np.repeat(_blobs(2_600, D, 3), 4, axis=0)[rng.permutation(10_400)]
    elif kind == "grid-ties":  # few distinct distances
        X = rng.integers(-3, 4, (10_300, 3)).astype(np.float64)
    elif kind == "gaussian":  # structureless: nothing to skip
        X = rng.standard_normal((10_300, D))
    else:
        X, k = _blobs(10_300, D, 3), 100
    X = X.astype(dtype)
    R, Q = np.ascontiguousarray(X[:-300]), np.ascontiguousarray(X[-300:])
    Q = np.vstack([Q, R[:40]])  # queries at distance 0 from reference rows
    mu = R.mean(axis=0)
    ix = build_index(R, mu, cluster_rows=512)  # 20 clusters for 12 blobs
    d_plain, i_plain, _ = block_topk(Q, R, k, mu, 1000)
    d_pr, i_pr, counts = pruned_topk(Q, R, ix, k, mu, 1000, mode)
    np.testing.assert_array_equal(i_pr, i_plain)
    np.testing.assert_array_equal(d_pr, d_plain)  # bit for bit: the same exact loop
    assert counts[1] == Q.shape[0] * R.shape[0]
    if kind.startswith("blobs"):
        assert counts[0] < 0.5 * counts[1]  # separated blobs: most distances skipped


def test_auto_takes_the_plain_kernel_where_pruning_cannot_pay():
    rng = np.random.default_rng(4)
    R = rng.uniform(-1, 1, (12_000, 16))
    Q = rng.uniform(-1, 1, (2_000, 16))
    mu = R.mean(axis=0)
    ix = build_index(R, mu)
    _, _, pruned = pruned_topk(Q, R, ix, 10, mu, 0, "pruned")
    d, i, auto = pruned_topk(Q, R, ix, 10, mu, 0, "auto")
    assert pruned[0] > 0.9 * pruned[1]  # uniform in 16 dimensions: little to skip
    assert auto[0] >= pruned[0]  # after the probe, every distance (the plain kernel)
    d_plain, i_plain, _ = block_topk(Q, R, 10, mu, 0)
    np.testing.assert_array_equal(i, i_plain)
    np.testing.assert_array_equal(d, d_plain)



def test_auto_probes_tiles_of_one_region_as_the_search_visits_them():
    from kmeans_dask.kernels.knn_pruned import PROBE_ROWS, TILE_QUERY, _probe_rows

    region = np.random.default_rng(5).integers(0, 30, 5_000)  # 30 regions, shuffled rows
    probe = _probe_rows(region)
    assert probe.size == PROBE_ROWS
    order = np.argsort(region, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    runs = np.sort(position[probe]).reshape(-1, TILE_QUERY)
    # runs of consecutive rows of the region order (so each spans only a few regions), apart
    assert (np.diff(runs, axis=1) == 1).all()
    assert runs[1, 0] - runs[0, -1] > 1_000
    assert all(np.unique(region[order[r]]).size <= 3 for r in runs)
    np.testing.assert_array_equal(_probe_rows(region[:200]), np.arange(200))  # all of few


# --------------------------------------------------------------------------- estimator

CHUNKINGS = {
    "one-block": ((20_000,), (600,)),
    "ragged": ((SMALLEST + 3, 1, 2_000, 20_000 - SMALLEST - 2_004), (1, 299, 7, 293)),
}


@pytest.mark.parametrize("case", list(CHUNKINGS))
def test_kneighbors_equals_sklearn_brute_and_the_plain_path(backend, keep_chunks, blobs, case):
    R, Q, y, _ = blobs
    ref_chunks, q_chunks = CHUNKINGS[case]
    k = 11
    Xr = da.from_array(R, chunks=(ref_chunks, D))
    Xq = da.from_array(Q, chunks=(q_chunks, D))
    pruned = KNeighborsScorer(n_neighbors=k, algorithm="pruned").fit(Xr, y)
    brute = KNeighborsScorer(n_neighbors=k, algorithm="brute").fit(Xr, y)
    assert pruned._ref.blocks.sizes == list(ref_chunks)
    (dist, ind), stats = dask.compute(pruned.kneighbors(Xq), pruned.search_stats_["delayed"])
    ref_dist, ref_ind = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(R).kneighbors(Q)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=0, atol=1e-9)
    b_dist, b_ind = dask.compute(*brute.kneighbors(Xq))
    np.testing.assert_array_equal(ind, b_ind)
    np.testing.assert_array_equal(dist, b_dist)
    assert stats["total"] == R.shape[0] * Q.shape[0]
    # one index of 9 clusters (12 blobs), or two of 4 (two blocks too small for one)
    assert stats["skipped_fraction"] > 0.2
    assert stats["skipped"] == stats["total"] - stats["computed"]


def test_ties_and_duplicates_follow_the_lower_reference_row(keep_chunks):
    rng = np.random.default_rng(8)
    base = rng.integers(-2, 3, (3_000, 3)).astype(np.float64)
    R = np.vstack([base, base, base[:2_000], base[:2_000]])  # duplicates across blocks
    Q = np.vstack([rng.integers(-2, 3, (60, 3)).astype(np.float64), R[:20]])
    D2 = ((Q[:, None, :] - R[None, :, :]) ** 2).sum(-1)
    expected = np.lexsort((np.broadcast_to(np.arange(R.shape[0]), D2.shape), D2), axis=1)
    y = np.arange(R.shape[0]) % 5
    for ref_chunks in ((10_000,), (SMALLEST, 1, 10_000 - SMALLEST - 1)):
        knn = KNeighborsScorer(n_neighbors=9, algorithm="pruned").fit(
            da.from_array(R, chunks=(ref_chunks, 3)), y
        )
        ind = knn.kneighbors(da.from_array(Q, chunks=(33, 3)), return_distance=False)
        np.testing.assert_array_equal(ind.compute(), expected[:, :9])


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_classifier_and_outlier_score_equal_sklearn(backend, blobs, weights):
    R, Q, y, _ = blobs
    knn = KNeighborsScorer(n_neighbors=9, weights=weights, algorithm="pruned").fit(
        da.from_array(R, chunks=6_000), da.from_array(y, chunks=6_000)
    )
    ref = KNeighborsClassifier(n_neighbors=9, weights=weights, algorithm="brute").fit(R, y)
    np.testing.assert_array_equal(knn.predict(Q), ref.predict(Q))
    np.testing.assert_allclose(knn.predict_proba(Q), ref.predict_proba(Q), rtol=0, atol=1e-12)
    frame = knn.score_frame(da.from_array(Q, chunks=200)).compute()
    ref_dist, _ = ref.kneighbors(Q)
    np.testing.assert_allclose(frame["kth_distance"], ref_dist[:, -1], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(frame["knn_label"], ref.predict(Q))
    # queries at distance 0 too (scikit-learn's expanded form does not give exact zeros on
    # such data, so these compare with the plain path, bit for bit)
    Qz = da.from_array(np.vstack([Q, R[:25]]), chunks=200)
    brute = KNeighborsScorer(n_neighbors=9, weights=weights, algorithm="brute").fit(R, y)
    plain = brute.score_frame(Qz).compute()
    frame = knn.score_frame(Qz).compute()
    for col in ("knn_label", "vote_share", "kth_distance", "mean_distance"):
        np.testing.assert_array_equal(frame[col], plain[col])


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regression_equals_sklearn_regressor(backend, blobs, weights):
    R, Q, _, t = blobs
    knn = KNeighborsScorer(n_neighbors=8, weights=weights, task="regress", algorithm="auto")
    knn.fit(da.from_array(R, chunks=5_000), da.from_array(t, chunks=5_000))
    ref = KNeighborsRegressor(n_neighbors=8, weights=weights, algorithm="brute").fit(R, t)
    pred = knn.predict(da.from_array(Q, chunks=150)).compute()
    np.testing.assert_allclose(pred, ref.predict(Q), rtol=1e-12, atol=1e-12)


def test_search_stats_attribute_and_debug_log(blobs, caplog):
    R, Q, y, _ = blobs
    with caplog.at_level(logging.DEBUG, logger="kmeans_dask.knn"):
        knn = KNeighborsScorer(n_neighbors=5).fit(R, y)  # algorithm='auto'
        knn.predict(Q)
    stats = knn.search_stats_
    assert stats["total"] == R.shape[0] * Q.shape[0] and stats["skipped_fraction"] > 0.3
    assert "pruning skipped" in caplog.text
    brute = KNeighborsScorer(n_neighbors=5, algorithm="brute").fit(R, y)
    brute.predict(Q)
    assert brute.search_stats_["skipped"] == 0
    assert brute._ref.index is None


def test_auto_builds_the_index_only_for_a_search_large_enough_to_pay_for_it(blobs):
    """'auto' indexes from 40 queries per landmark cluster of the largest block on (here
    two blocks of 10,000 rows, 4 clusters each: from 160 queries); a smaller search is brute
    force without building anything, and once built the index serves every later search.
    Results equal scikit-learn's whatever the mode."""
    from kmeans_dask.engine.knn_graph import AUTO_QUERIES_PER_CLUSTER

    R, Q, y, _ = blobs
    ref = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(R, y)
    knn = KNeighborsScorer(n_neighbors=5).fit(R, y)
    clusters = max(n // CLUSTER_ROWS for n in knn._ref.blocks.sizes)
    few, enough = Q[: AUTO_QUERIES_PER_CLUSTER * clusters - 1], Q
    assert enough.shape[0] >= AUTO_QUERIES_PER_CLUSTER * clusters
    np.testing.assert_array_equal(knn.predict(few), ref.predict(few))
    assert knn.search_stats_["mode"] == "brute" and knn.search_stats_["skipped"] == 0
    assert knn._ref.index is None
    np.testing.assert_array_equal(knn.predict(enough), ref.predict(enough))
    assert knn.search_stats_["mode"] == "auto" and knn.search_stats_["skipped"] > 0
    np.testing.assert_array_equal(knn.predict(few), ref.predict(few))  # the kept index
    assert knn.search_stats_["mode"] == "auto" and knn.search_stats_["skipped"] > 0
    pruned = KNeighborsScorer(n_neighbors=5, algorithm="pruned").fit(R, y)
    np.testing.assert_array_equal(pruned.predict(Q[:10]), ref.predict(Q[:10]))
    assert pruned.search_stats_["mode"] == "pruned"


def test_invalid_algorithm(blobs):
    R, _, y, _ = blobs
    match = r"The 'algorithm' parameter of KNeighborsScorer must be one of 'auto', 'brute', "
    with pytest.raises(InvalidParameterError, match=match + r"'pruned'. Got 'kd_tree' instead."):
        KNeighborsScorer(algorithm="kd_tree").fit(R, y)


def test_auto_drops_an_index_its_own_rows_cannot_prune_with():
    """'auto' keeps a block's index only when a probe of the block's own rows skips at least
    AUTO_KEEP_SKIP of their distances: on structureless data the index is dropped at its
    first search (no memory, no probe per pair task) and every pair is brute force, with
    scikit-learn's neighbours; 'pruned' keeps it whatever it skips."""
    from kmeans_dask.kernels.knn_pruned import AUTO_KEEP_SKIP, prunable

    rng = np.random.default_rng(8)
    U = rng.uniform(-1, 1, (2 * SMALLEST, 16))
    mu = U.mean(axis=0)
    assert not prunable(U, build_index(U, mu), 5, mu)
    B = _blobs(SMALLEST + 500, D, 9)
    assert prunable(B, build_index(B, B.mean(axis=0)), 5, B.mean(axis=0))
    assert 0 < AUTO_KEEP_SKIP < 1

    R, Q = U, rng.uniform(-1, 1, (400, 16))
    y = rng.integers(0, 3, R.shape[0])
    ref = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(R)
    auto = KNeighborsScorer(n_neighbors=5, task="classify").fit(R, y)
    dist, ind = auto.kneighbors(Q)
    assert auto.search_stats_["mode"] == "auto" and auto.search_stats_["skipped"] == 0
    assert auto._ref.blocks.sizes == [SMALLEST, SMALLEST]  # each big enough for an index
    assert auto._ref.index == [None, None]  # built, probed with their own rows, dropped
    ref_dist, ref_ind = ref.kneighbors(Q)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)
    pruned = KNeighborsScorer(n_neighbors=5, algorithm="pruned").fit(R, y)
    np.testing.assert_array_equal(pruned.kneighbors(Q)[1], ref_ind)
    assert all(ix is not None for ix in pruned._ref.index)
    assert pruned.search_stats_["mode"] == "pruned"
