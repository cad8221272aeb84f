"""KMeans and StandardScaler behave as scikit-learn estimators."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.pipeline import Pipeline

from kmeans_dask import KMeans, StandardScaler
from kmeans_dask.engine.blocks import get_client


def test_clone_get_set_params():
    km = KMeans(5, init="random", max_iter=20, random_state=3)
    c = clone(km)
    assert c.get_params() == km.get_params()
    c.set_params(n_clusters=7)
    assert c.n_clusters == 7 and km.n_clusters == 5
    assert "oversampling_factor" in km.get_params()
    assert repr(km) == "KMeans(init='random', max_iter=20, n_clusters=5, random_state=3)"


def test_pipeline_on_numpy_without_a_cluster():
    assert get_client() is None  # plain scikit-learn use: no distributed client
    X, _y = make_blobs(2000, n_features=3, centers=4, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()), ("km", KMeans(4, random_state=0))])
    labels = pipe.fit_predict(X)
    assert isinstance(labels, np.ndarray) and labels.shape == (2000,)
    np.testing.assert_array_equal(pipe.predict(X), labels)
    assert pipe.transform(X).shape == (2000, 4)
    assert pipe.named_steps["km"].n_features_in_ == 3


def test_fit_does_not_change_parameters_and_logs_iterations(caplog):
    X, _ = make_blobs(500, n_features=2, centers=3, random_state=1)
    km = KMeans(3, random_state=0)
    before = km.get_params()
    with caplog.at_level(logging.DEBUG, logger="kmeans_dask"):  # iterations are DEBUG
        km.fit(X)
    assert km.get_params() == before
    its = [r for r in caplog.records if r.name == "kmeans_dask.lloyd"]
    assert len(its) == km.n_iter_
    assert "inertia" in its[0].getMessage() and "centre shift" in its[0].getMessage()
    assert [h.iteration for h in km.history_] == list(range(1, km.n_iter_ + 1))


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, object])
def test_other_number_types_are_widened_to_float64(dtype):
    # the README's promise: float32 stays float32, every other number type becomes float64
    X, _ = make_blobs(300, n_features=3, centers=3, random_state=0)
    Xd = np.round(X * 10).astype(dtype)
    as64 = Xd.astype(np.float64)
    km = KMeans(3, random_state=0).fit(Xd)  # no warning (filterwarnings = error)
    assert km.cluster_centers_.dtype == np.float64
    ref = KMeans(3, random_state=0).fit(as64)
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    assert km.transform(Xd).dtype == np.float64
    assert StandardScaler().fit(Xd).transform(Xd).dtype == np.float64
