"""The same data and seed give bit-identical results whatever runs them: the local thread
pool, or a cluster of 2 or 3 workers. Blocks are planned from the data alone
(``kmeans_dask/engine/plan.py``) and partials are added along a fixed tree over the blocks
(``kmeans_dask/engine/tree.py``), wherever the blocks are."""

from __future__ import annotations

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from kmeans_dask import KMeans, StandardScaler, sweep_k
from kmeans_dask.synthetic import make_blobs

pytestmark = pytest.mark.slow


def _results(X, with_sweep: bool) -> dict:
    """What a job reports: scaler, centres, labels, inertia (and the sweep's metrics)."""
    with dask.config.set({"kmeans_dask.block-bytes": "256KiB"}):
        scaler = StandardScaler().fit(X)
        Xs = scaler.transform(X)
        km = KMeans(5, random_state=3, tol=0, max_iter=15).fit(Xs)
        if not with_sweep:
            sweep = None
        else:
            sweep = sweep_k(Xs, [3, 5], silhouette_sample_size=500, random_state=3, max_iter=15)
    out = {
        "mean": scaler.mean_,
        "scale": scaler.scale_,
        "centres": km.cluster_centers_,
        "labels": np.asarray(km.labels_.compute()),
        "inertia": np.array([km.inertia_]),
    }
    if sweep is not None:
        out["sweep"] = sweep.table.drop(columns=["fit_seconds", "metrics_seconds"]).to_numpy()
    return out


def _inputs() -> dict:
    X, _, _ = make_blobs(30_000, 6, centers=5, cluster_std=4.0, chunk_rows=7_000, random_state=2)
    Xn = X.compute()
    frame = dd.from_pandas(pd.DataFrame(Xn, columns=[f"f{i}" for i in range(6)]), npartitions=7)
    return {"numpy": Xn, "dask array": da.from_array(Xn, chunks=(4_000, 6)), "dask frame": frame}


def _all_results() -> dict:
    return {k: _results(v, k == "dask frame") for k, v in _inputs().items()}


@pytest.fixture(scope="module")
def by_layout(cluster):
    out: dict[str, dict] = {}
    out["local threads"] = _all_results()
    with Client(cluster, set_as_default=False) as c, c.as_current():
        out["2 workers"] = _all_results()
    for n in (3,):  # 3 workers: blocks unevenly spread (the session cluster has 2)
        with (
            LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0") as lc,
            Client(lc, set_as_default=False) as c,
            c.as_current(),
        ):
            out[f"{n} worker(s)"] = _all_results()
    return out


@pytest.mark.parametrize("layout", ["2 workers", "3 worker(s)"])
@pytest.mark.parametrize("kind", ["numpy", "dask array", "dask frame"])
def test_bit_identical_on_every_layout(by_layout, layout, kind):
    ref = by_layout["local threads"][kind]
    got = by_layout[layout][kind]
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=f"{key} differs on {layout}")
