"""KNeighborsScorer against scikit-learn's brute-force neighbours, locally and on a cluster."""

from __future__ import annotations

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask.callbacks import Callback
from dask.core import get_dependencies
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, NearestNeighbors

from kmeans_dask import KMeans, KNeighborsScorer
from kmeans_dask.exceptions import InputError, InvalidParameterError
from kmeans_dask.knn import MERGE_FAN_IN

N_REF, N_Q, D = 1000, 200, 5


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    R = rng.standard_normal((N_REF, D))
    Q = rng.standard_normal((N_Q, D))
    y = rng.choice(np.array([-3, 2, 5, 11]), N_REF)  # sparse, negative labels
    t = rng.standard_normal(N_REF)
    return R, Q, y, t


CHUNKINGS = {
    "regular": ((250,) * 4, (50,) * 4, 15),
    "ragged-one-row": ((1, 1, 298, 1, 399, 300), (1, 99, 1, 99), 15),
    "k-above-block": ((40,) * 25, (200,), 60),
}


@pytest.mark.parametrize("case", list(CHUNKINGS))
def test_kneighbors_equals_sklearn_brute(backend, keep_chunks, data, case):
    R, Q, y, _ = data
    ref_chunks, q_chunks, k = CHUNKINGS[case]
    knn = KNeighborsScorer(n_neighbors=k).fit(
        da.from_array(R, chunks=(ref_chunks, D)), da.from_array(y, chunks=(ref_chunks,))
    )
    assert knn._ref.blocks.sizes == list(ref_chunks)  # the chunking under test reached the blocks
    dist, ind = knn.kneighbors(da.from_array(Q, chunks=(q_chunks, D)))
    assert isinstance(dist, da.Array) and dist.chunks[0] == q_chunks
    dist, ind = dask.compute(dist, ind)
    ref_dist, ref_ind = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(R).kneighbors(Q)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=0, atol=1e-9)


def test_ties_go_to_the_lower_reference_row_for_any_chunking(keep_chunks):
    """Coarse-grid data (many equal distances): one answer, the (distance, index) order."""
    rng = np.random.default_rng(3)
    R = rng.integers(-2, 3, (300, 3)).astype(np.float64)
    Q = rng.integers(-2, 3, (40, 3)).astype(np.float64)
    D2 = ((Q[:, None, :] - R[None, :, :]) ** 2).sum(-1)
    expected = np.lexsort((np.broadcast_to(np.arange(300), D2.shape), D2), axis=1)[:, :12]
    y = np.arange(300) % 3
    for ref_chunks, q_chunks in (((300,), (40,)), ((7, 1, 150, 142), (1, 13, 26))):
        knn = KNeighborsScorer(n_neighbors=12).fit(da.from_array(R, chunks=(ref_chunks, 3)), y)
        ind = knn.kneighbors(da.from_array(Q, chunks=(q_chunks, 3)), return_distance=False)
        np.testing.assert_array_equal(ind.compute(), expected)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_predict_and_proba_equal_sklearn_classifier(backend, data, weights):
    R, Q, y, _ = data
    knn = KNeighborsScorer(n_neighbors=9, weights=weights).fit(
        da.from_array(R, chunks=300), da.from_array(y, chunks=300)
    )
    ref = KNeighborsClassifier(n_neighbors=9, weights=weights, algorithm="brute").fit(R, y)
    np.testing.assert_array_equal(knn.classes_, ref.classes_)
    pred = knn.predict(da.from_array(Q, chunks=70))
    proba = knn.predict_proba(da.from_array(Q, chunks=70))
    assert isinstance(pred, da.Array) and isinstance(proba, da.Array)
    np.testing.assert_array_equal(pred.compute(), ref.predict(Q))
    np.testing.assert_allclose(proba.compute(), ref.predict_proba(Q), rtol=0, atol=1e-12)
    # in-memory queries give in-memory answers
    np.testing.assert_array_equal(knn.predict(Q), ref.predict(Q))


def test_distance_weights_at_zero_distance_equal_sklearn():
    """Queries that are reference rows: those neighbours get weight 1, the others 0.

    Integer data keeps scikit-learn's expanded-form distances exact, so its zero is a zero.
    """
    rng = np.random.default_rng(11)
    R = rng.integers(0, 1000, (400, 4)).astype(np.float64)
    y = rng.integers(0, 3, 400)
    Q = np.vstack([R[:30], rng.integers(0, 1000, (30, 4))]).astype(np.float64)
    knn = KNeighborsScorer(n_neighbors=5, weights="distance").fit(R, y)
    ref = KNeighborsClassifier(n_neighbors=5, weights="distance", algorithm="brute").fit(R, y)
    np.testing.assert_array_equal(knn.predict(Q), ref.predict(Q))
    np.testing.assert_allclose(knn.predict_proba(Q), ref.predict_proba(Q), rtol=0, atol=1e-12)
    assert (knn.predict_proba(Q[:30]).max(axis=1) == 1.0).all()


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regression_equals_sklearn_regressor(backend, data, weights):
    R, Q, _, t = data
    knn = KNeighborsScorer(n_neighbors=8, weights=weights, task="regress").fit(
        da.from_array(R, chunks=400), da.from_array(t, chunks=400)
    )
    ref = KNeighborsRegressor(n_neighbors=8, weights=weights, algorithm="brute").fit(R, t)
    pred = knn.predict(da.from_array(Q, chunks=64)).compute()
    np.testing.assert_allclose(pred, ref.predict(Q), rtol=1e-12, atol=1e-12)


def test_score_frame(backend, data):
    R, Q, y, _ = data
    knn = KNeighborsScorer(n_neighbors=6).fit(da.from_array(R, chunks=500), y)
    Xq = da.from_array(Q, chunks=70)
    ids = dd.from_pandas(pd.Series([f"row{i}" for i in range(N_Q)]), npartitions=3)
    frame = knn.score_frame(Xq, ids, id_column="customer_id")
    assert isinstance(frame, dd.DataFrame)
    assert list(frame.columns) == [
        "customer_id",
        "knn_label",
        "vote_share",
        "kth_distance",
        "mean_distance",
    ]
    got = frame.compute()
    ref = KNeighborsClassifier(n_neighbors=6, algorithm="brute").fit(R, y)
    dist, _ = ref.kneighbors(Q)
    assert got["customer_id"].tolist() == [f"row{i}" for i in range(N_Q)]
    np.testing.assert_array_equal(got.index, np.arange(N_Q))
    np.testing.assert_array_equal(got["knn_label"], ref.predict(Q))
    np.testing.assert_allclose(got["vote_share"], ref.predict_proba(Q).max(axis=1), atol=1e-12)
    np.testing.assert_allclose(got["kth_distance"], dist[:, -1], atol=1e-9)
    np.testing.assert_allclose(got["mean_distance"], dist.mean(axis=1), atol=1e-9)


def test_score_frame_regression_and_default_ids(data):
    R, Q, _, t = data
    knn = KNeighborsScorer(n_neighbors=4, task="regress").fit(R, t)
    got = knn.score_frame(Q[:50]).compute()
    assert list(got.columns) == ["id", "knn_mean", "kth_distance", "mean_distance"]
    np.testing.assert_array_equal(got["id"], np.arange(50))
    ref = KNeighborsRegressor(n_neighbors=4, algorithm="brute").fit(R, t)
    np.testing.assert_allclose(got["knn_mean"], ref.predict(Q[:50]), atol=1e-12)


def test_dataframes_kmeans_labels_and_float32(client, data):
    """Reference as a dask DataFrame labelled by KMeans; queries by column name; float32."""
    R, Q, _, _ = data
    cols = [f"f{j}" for j in range(D)]
    ref_df = dd.from_pandas(pd.DataFrame(R.astype(np.float32), columns=cols), npartitions=3)
    km = KMeans(n_clusters=4, random_state=0).fit(ref_df)
    knn = KNeighborsScorer(n_neighbors=10).fit(ref_df, km.labels_)
    assert knn._ref.blocks.dtype == np.float32
    q_frame = pd.DataFrame(Q.astype(np.float32), columns=cols)[cols[::-1]]  # other order
    q_df = dd.from_pandas(q_frame, npartitions=2)
    pred = knn.predict(q_df).compute()
    R32, Q32 = R.astype(np.float32).astype(np.float64), Q.astype(np.float32).astype(np.float64)
    ref = KNeighborsClassifier(n_neighbors=10, algorithm="brute")
    # the training labels, without recomputing labels_ through a second (optimised) graph
    labels = km.predict(ref_df.compute())
    np.testing.assert_array_equal(pred, ref.fit(R32, labels).predict(Q32))


def test_sklearn_estimator_api():
    from sklearn.base import clone

    knn = KNeighborsScorer(n_neighbors=3, weights="distance")
    assert clone(knn).get_params() == {
        "n_neighbors": 3,
        "weights": "distance",
        "task": "classify",
        "algorithm": "auto",
    }


# --------------------------------------------------------------------------- errors


def test_n_neighbors_above_reference_rows(data):
    R, _, y, _ = data
    with pytest.raises(InvalidParameterError, match=r"'n_neighbors'.*\[1, 1000\].*Got 1001"):
        KNeighborsScorer(n_neighbors=1001).fit(R, y)
    with pytest.raises(InvalidParameterError, match=r"'n_neighbors'.*\[1, 1000\].*Got 1001"):
        KNeighborsScorer(n_neighbors=1001).fit(da.from_array(R, chunks=300), y)
    knn = KNeighborsScorer(n_neighbors=5).fit(R, y)
    with pytest.raises(InvalidParameterError, match=r"'n_neighbors'.*Got 2000"):
        knn.kneighbors(R[:3], n_neighbors=2000)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_neighbors": 0}, r"'n_neighbors' parameter of KNeighborsScorer must be an int.*Got 0"),
        ({"n_neighbors": 2.5}, r"'n_neighbors'.*Got 2.5"),
        ({"weights": "gaussian"}, r"'weights'.*'uniform', 'distance'. Got 'gaussian'"),
        ({"task": "rank"}, r"'task'.*'classify', 'regress'. Got 'rank'"),
    ],
)
def test_bad_parameters(data, params, match):
    R, _, y, _ = data
    with pytest.raises(InvalidParameterError, match=match):
        KNeighborsScorer(**params).fit(R, y)


def test_query_with_other_number_of_features(data):
    R, Q, y, _ = data
    knn = KNeighborsScorer(n_neighbors=3).fit(R, y)
    with pytest.raises(InputError, match=r"X has 4 features.*expecting 5 features"):
        knn.predict(Q[:, :4])
    with pytest.raises(InputError, match=r"X has 4 features.*expecting 5 features"):
        knn.kneighbors(da.from_array(Q[:, :4], chunks=50))


def test_nan_in_query(backend, data):
    R, Q, y, _ = data
    knn = KNeighborsScorer(n_neighbors=3).fit(da.from_array(R, chunks=500), y)
    Qn = Q.copy()
    Qn[57, 2] = np.nan
    msg = r"X contains NaN or infinity in column\(s\) \[2\].*row 57.*finite"
    with pytest.raises(InputError, match=msg):
        knn.predict(Qn)  # in memory: checked at once
    lazy = knn.predict(da.from_array(Qn, chunks=40))  # dask: checked when computed
    with pytest.raises(InputError, match=msg):
        lazy.compute()


def test_query_values_too_large_to_square(backend, data):
    R, Q, y, _ = data
    knn = KNeighborsScorer(n_neighbors=3).fit(da.from_array(R.astype(np.float32), chunks=500), y)
    Qb = Q.copy()
    Qb[57, 2] = 1e30  # fine in float64, beyond float32's squares: refused, not made inf
    msg = r"X has values too large to square and sum in column 2 .*in float32"
    with pytest.raises(InputError, match=msg):
        knn.predict(Qb)  # in memory: checked at once
    lazy = knn.predict(da.from_array(Qb, chunks=40))  # dask: checked when computed
    with pytest.raises(InputError, match=msg):
        lazy.compute()


def test_labels_misaligned_with_reference(data):
    R, _, y, _ = data
    msg = r"'y' parameter of KNeighborsScorer.fit must have one value per row of X"
    with pytest.raises(InputError, match=msg + r" \(1000 rows\). Got 999 values"):
        KNeighborsScorer().fit(R, y[:-1])
    with pytest.raises(InputError, match=msg):
        KNeighborsScorer().fit(da.from_array(R, chunks=300), da.from_array(y[1:], chunks=300))
    with pytest.raises(InputError, match=r"'y' parameter.*1-D.*Got shape \(1000, 2\)"):
        KNeighborsScorer().fit(R, np.c_[y, y])
    with pytest.raises(InputError, match=r"y has 1 NaN"):
        t = np.arange(N_REF, dtype=float)
        t[3] = np.nan
        KNeighborsScorer(task="regress").fit(da.from_array(R, chunks=300), t)


def test_unfitted_and_proba_in_regression(data):
    from sklearn.exceptions import NotFittedError

    R, Q, _, t = data
    with pytest.raises(NotFittedError):
        KNeighborsScorer().predict(Q)
    with pytest.raises(AttributeError, match="task='classify'"):
        KNeighborsScorer(n_neighbors=3, task="regress").fit(R, t).predict_proba(Q)


# --------------------------------------------------------------------------- graph shape


class _Sizes(Callback):
    """Records the bytes of every task result of a local computation."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes: dict = {}

    def _posttask(self, key, result, dsk, state, worker_id):
        self.nbytes[key] = sum(
            getattr(r, "nbytes", 0) for r in (result if isinstance(result, tuple) else (result,))
        )


def test_no_task_holds_more_than_one_block_pair(keep_chunks, data):
    """Every pair task reads one query block and one reference block; merge and output
    tasks read only (n_query_block x k) top-k lists; no result is a distance matrix."""
    R, Q, y, _ = data
    k = 5
    ref_chunks, q_chunks = (100,) * 10, (40,) * 5
    knn = KNeighborsScorer(n_neighbors=k).fit(da.from_array(R, chunks=(ref_chunks, D)), y)
    Xq = da.from_array(Q, chunks=(q_chunks, D))
    pred = knn.predict(Xq)
    graph = dict(pred.__dask_graph__())

    def kind(key) -> str:
        name = key[0] if isinstance(key, tuple) else key
        for prefix in ("knn-query", "knn-pair", "knn-merge", "knn-ref"):
            if str(name).startswith(prefix):
                return prefix
        return "query-chunk" if str(name).startswith(Xq.name) else "other"

    counts: dict[str, int] = {}
    for key, _task in graph.items():
        deps = [kind(d) for d in get_dependencies(graph, key)]
        counts[kind(key)] = counts.get(kind(key), 0) + 1
        if kind(key) == "knn-pair":
            assert sorted(deps) == ["knn-query", "knn-ref"]
        elif kind(key) == "knn-merge":
            assert 2 <= len(deps) <= MERGE_FAN_IN
            assert set(deps) <= {"knn-pair", "knn-merge"}
        elif kind(key) == "knn-query":
            assert deps == ["query-chunk"]
        else:  # the vote and array plumbing never touch a block directly
            assert not {"knn-ref", "query-chunk"} & set(deps)
    assert counts["knn-pair"] == len(q_chunks) * len(ref_chunks)
    assert counts["knn-merge"] == len(q_chunks) * 3  # fan-in 8 over 10 lists: (8, 2), then 1

    sizes = _Sizes()
    with sizes, dask.config.set(scheduler="sync"):
        pred.compute(optimize_graph=False)
    topk_bytes = max(q_chunks) * k * 3 * 8 + 16  # the top-k lists and the distance counts
    for key, nbytes in sizes.nbytes.items():
        if kind(key) in ("knn-pair", "knn-merge"):
            assert nbytes <= topk_bytes
    largest_input = max(max(q_chunks), max(ref_chunks)) * D * 8
    assert max(sizes.nbytes.values()) <= max(largest_input, topk_bytes)
    assert max(sizes.nbytes.values()) < max(q_chunks) * max(ref_chunks) * 8  # a pair's distances
