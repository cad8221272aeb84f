"""Every job option end to end at least once, against references: CSV input with Hive
folders and filters in float32, and KNN regression with distance weights on a target column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import KNeighborsRegressor

from kmeans_dask.io import read_table
from kmeans_dask.job import load_model
from kmeans_dask.job.config import parse_config
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers
from kmeans_dask.job.pipeline import run

pytestmark = pytest.mark.slow


def _hive(df: pd.DataFrame, folder: Path, fmt: str) -> None:
    for region, sub in df.groupby("region"):
        out = folder / f"region={region}"
        out.mkdir(parents=True)
        sub = sub.drop(columns="region")
        if fmt == "csv":
            sub.to_csv(out / "part-0.csv", index=False)
        else:
            sub.to_parquet(out / "part-0.parquet", index=False)


def test_csv_hive_filters_float32(tmp_path, client):
    df, truth = make_customers(3000, seed=5)
    _hive(df, tmp_path / "in", "csv")
    keep = df.region.isin(["north", "east"]).to_numpy()
    config = parse_config(
        {
            "name": "csv32",
            "input": {
                "uri": str(tmp_path / "in"),
                "format": "csv",
                "columns": DEMO_FEATURES,
                "id_column": "customer_id",
                "filters": [["region", "in", ["north", "east"]]],
            },
            "kmeans": {"k": 5, "dtype": "float32", "random_state": 0},
            "output": {"uri": str(tmp_path / "out")},
        }
    )
    res = run(config, client=client)
    assign = read_table(f"{res.results_uri}/assignments")
    assert len(assign) == keep.sum() and set(assign.customer_id) == set(df.customer_id[keep])
    merged = pd.DataFrame({"customer_id": df.customer_id, "truth": truth}).merge(assign)
    assert adjusted_rand_score(merged.truth, merged.segment) == 1.0
    model_doc = json.loads(Path(res.results_uri, "model", "model.json").read_text())
    assert model_doc["dtype"] == "float32"
    assert load_model(res.run_uri).kmeans.cluster_centers_.dtype == np.float32


def test_knn_regression_with_distance_weights_on_a_target_column(tmp_path, client):
    df, _ = make_customers(2500, seed=6)
    q, _ = make_customers(300, seed=7, offset=2500)
    _hive(df, tmp_path / "in", "parquet")
    _hive(q, tmp_path / "q", "parquet")
    features = [f for f in DEMO_FEATURES if f != "spend"]
    config = parse_config(
        {
            "name": "regress",
            "input": {"uri": str(tmp_path / "in"), "columns": features, "id_column": "customer_id"},
            "kmeans": {"k": 5, "random_state": 0},
            "knn": {
                "enabled": True,
                "n_neighbors": 7,
                "weights": "distance",
                "task": "regress",
                "target": "spend",
                "query": {"uri": str(tmp_path / "q"), "id_column": "customer_id"},
            },
            "output": {"uri": str(tmp_path / "out")},
        }
    )
    res = run(config, client=client)
    scores = read_table(f"{res.results_uri}/scores").set_index("customer_id")
    # the reference: scikit-learn's brute-force regressor on the same scaled rows, in the
    # order the job reads them (Hive folders sorted, then files)
    ref = pd.concat([df[df.region == r] for r in sorted(df.region.unique())])
    qq = pd.concat([q[q.region == r] for r in sorted(q.region.unique())])
    scaler = load_model(res.run_uri).scaler
    sk = KNeighborsRegressor(n_neighbors=7, weights="distance", algorithm="brute")
    sk.fit(scaler.transform(ref[features].to_numpy()), ref.spend.to_numpy())
    want = sk.predict(scaler.transform(qq[features].to_numpy()))
    np.testing.assert_allclose(scores.loc[qq.customer_id, "knn_mean"], want, rtol=1e-9)
