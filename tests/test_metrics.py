"""Map-reduce metrics against scikit-learn."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score as sk_ari
from sklearn.metrics import calinski_harabasz_score as sk_ch
from sklearn.metrics import davies_bouldin_score as sk_db
from sklearn.metrics import silhouette_score as sk_sil

from kmeans_dask.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    contingency_matrix,
    davies_bouldin_score,
    silhouette_full_sq_score,
    silhouette_sample_score,
)


@pytest.mark.parametrize("chunks", [1000, 333, 1])
def test_ari_matches_sklearn(chunks, backend):
    rng = np.random.default_rng(0)
    n = 60 if chunks == 1 else 3000
    a = rng.integers(0, 5, size=n)
    b = np.where(rng.uniform(size=n) < 0.8, a, rng.integers(0, 7, size=n))
    ours = adjusted_rand_score(da.from_array(a, chunks=chunks), da.from_array(b, chunks=chunks))
    np.testing.assert_allclose(ours, sk_ari(a, b), rtol=1e-12)
    assert adjusted_rand_score(a, (a + 1) % 5) == pytest.approx(1.0)


def test_contingency_counts():
    c = contingency_matrix(np.array([0, 0, 1, 2]), np.array([1, 1, 0, 0]))
    np.testing.assert_array_equal(c, [[0, 2], [1, 0], [1, 0]])


# --------------------------------------------------------------------------- cluster quality


def _spark_brute(X, labels, w=None):
    """Spark's squared-Euclidean silhouette straight from its definition (n x n)."""
    w = np.ones(len(X)) if w is None else w
    D = ((X[:, None, :] - X[None]) ** 2).sum(-1)
    ks = np.unique(labels)
    s = np.zeros(len(X))
    for i in range(len(X)):
        own = labels == labels[i]
        if w[own].sum() == w[i]:
            continue
        a = (D[i, own] * w[own]).sum() / (w[own].sum() - w[i])
        b = min(
            (D[i, labels == c] * w[labels == c]).sum() / w[labels == c].sum()
            for c in ks
            if c != labels[i]
        )
        s[i] = (b - a) / max(a, b)
    return (s * w).sum() / w.sum()


def _data(n=600, k=4, dtype=np.float64, seed=0, shift=0.0):
    X, y = make_blobs(n, n_features=3, centers=k, cluster_std=2.0, random_state=seed)
    return (X + shift).astype(dtype), y


@pytest.mark.parametrize("chunks", [None, 250, 1], ids=["numpy", "ragged", "one-row"])
def test_silhouette_full_sq_equals_brute_force(chunks, backend, keep_chunks):
    X, y = _data(n=60 if chunks == 1 else 300, shift=100.0)
    y[:1] = 3  # make the clusters uneven; one is still a singleton-free cluster
    data = X if chunks is None else da.from_array(X, chunks=(chunks, 3))
    np.testing.assert_allclose(silhouette_full_sq_score(data, y), _spark_brute(X, y), rtol=1e-9)


def test_silhouette_full_sq_weights_and_singletons():
    X, y = _data(n=120)
    y = y.copy()
    y[0] = 4  # a singleton cluster scores 0
    w = np.random.default_rng(1).integers(1, 4, size=len(X)).astype(float)
    np.testing.assert_allclose(silhouette_full_sq_score(X, y, w), _spark_brute(X, y, w), rtol=1e-9)
    # Spark removes a row's whole weight from its own cluster, so weights are not repeated
    # rows; a constant weight changes nothing
    np.testing.assert_allclose(
        silhouette_full_sq_score(X, y, np.full(len(X), 2.5)), _spark_brute(X, y), rtol=1e-9
    )


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-5)])
@pytest.mark.parametrize("chunks", [None, 700, 333])
def test_ch_and_db_equal_sklearn(dtype, rtol, chunks, backend, keep_chunks):
    X, y = _data(n=2000, k=5, dtype=dtype, shift=1e3 if dtype == np.float64 else 0.0)
    data = X if chunks is None else da.from_array(X, chunks=(chunks, 3))
    np.testing.assert_allclose(calinski_harabasz_score(data, y), sk_ch(X, y), rtol=rtol)
    np.testing.assert_allclose(davies_bouldin_score(data, y), sk_db(X, y), rtol=rtol)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-5)])
@pytest.mark.parametrize("chunks", [None, 1500, 777])
def test_sample_silhouette_equals_sklearn_on_the_same_rows(
    dtype, rtol, chunks, backend, keep_chunks
):
    X, y = _data(n=6000, k=4, dtype=dtype)
    data = X if chunks is None else da.from_array(X, chunks=(chunks, 3))
    score, idx = silhouette_sample_score(
        data, y, sample_size=1000, random_state=3, return_sample=True
    )
    assert 990 <= len(idx) <= 1010 and len(np.unique(idx)) == len(idx)
    np.testing.assert_allclose(score, sk_sil(X[idx].astype(np.float64), y[idx]), rtol=rtol)
    # the sample does not depend on the chunking
    _, idx_np = silhouette_sample_score(X, y, sample_size=1000, random_state=3, return_sample=True)
    np.testing.assert_array_equal(idx, idx_np)


def test_sample_is_stratified_so_small_clusters_count():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(9990, 2)), rng.normal(size=(10, 2)) + 20])
    y = np.r_[np.zeros(9990, int), np.ones(10, int)]
    _, idx = silhouette_sample_score(X, y, sample_size=100, random_state=0, return_sample=True)
    assert (y[idx] == 1).sum() >= 2  # plain random sampling of 100 would usually miss it
    assert 95 <= len(idx) <= 105


def test_metrics_need_two_clusters():
    X, _ = _data(n=50)
    with pytest.raises(ValueError, match=r"needs 2 <= number of clusters"):
        calinski_harabasz_score(X, np.zeros(50, int))
    assert np.isnan(silhouette_sample_score(X, np.zeros(50, int)))


@pytest.mark.parametrize("block, chunk", [(256, 1024), (7, 13), (64, 5000)])
@pytest.mark.parametrize("structured", [True, False])
def test_silhouette_rows_equal_sklearn_for_every_labelling(block, chunk, structured):
    """The per-row kernel of the sampled silhouettes: the sample is reordered by its joint
    labels internally, and each row's own distance is left out; duplicates, a singleton
    cluster and an empty cluster included. ``structured``: nested labellings (few joint
    runs); else independent random labellings (nearly one run per row)."""
    from sklearn.metrics import silhouette_samples

    from kmeans_dask.kernels.metrics import silhouette_rows

    rng = np.random.default_rng(5)
    n = 900
    S = rng.normal(size=(n, 6))
    S[40] = S[41] = S[42]  # duplicates
    S -= S.mean(axis=0)
    ks = np.array([2, 3, 5, 9])
    if structured:
        labels = np.stack([(np.floor(S[:, 0] * 2.0).astype(int) % k) for k in ks], axis=1)
    else:
        labels = np.stack([rng.integers(0, k, n) for k in ks], axis=1)
    labels[:, 3] = np.where(labels[:, 3] == 8, 7, labels[:, 3])  # cluster 8 of K=9 empty
    labels[17, 3] = 8  # ... but for one row: a singleton
    rows = np.r_[0:50, 300:420, 17, 899]
    out = silhouette_rows(S[rows], rows, S, labels, ks, block=block, chunk=chunk)
    for j in range(len(ks)):
        expected = silhouette_samples(S, labels[:, j])[rows]
        np.testing.assert_allclose(out[:, j], expected, rtol=1e-9, atol=1e-12)
    assert out[rows.tolist().index(17), 3] == 0.0  # singleton: 0 by definition
