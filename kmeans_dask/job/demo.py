"""`kmeans-dask demo`: synthetic customers with a known segment structure, then the full job.

The data is written (through :mod:`kmeans_dask.io`) as Hive-partitioned Parquet
(``region=*/``) to a folder, together with a set of new customers to score (some of them far
from every segment, so the outlier score has something to find); then ``configs/demo.yaml``
runs on an embedded LocalCluster, and :func:`check_demo` compares its segments with the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import (
    exists,
    read_table,
    read_text,
    remove,
    write_hive_parquet,
    write_parquet,
    write_text,
)
from ..io.fs import join

__all__ = ["DEMO_FEATURES", "DemoData", "check_demo", "make_customers", "write_demo_data"]

DEMO_FEATURES = ["age", "income", "spend", "visits", "tenure_months", "online_share"]
_REGIONS = ["north", "south", "east", "west"]

# segment profiles: mean and spread of each feature (age, income k$, spend $/month,
# visits/month, tenure months, online share)
_PROFILES = np.array(
    [
        [24, 28, 120, 9, 8, 0.85],  # young, digital, frequent, new
        [41, 95, 640, 4, 70, 0.45],  # affluent, established
        [67, 42, 210, 3, 150, 0.10],  # senior, loyal, in store
        [35, 60, 380, 14, 36, 0.60],  # busy families, many visits
        [52, 150, 1400, 2, 96, 0.30],  # premium, rare big baskets
    ]
)
_SPREAD = np.array([3.0, 8.0, 60.0, 1.2, 8.0, 0.05])


@dataclass
class DemoData:
    """Where the demo data is and what the truth is."""

    customers_uri: str
    queries_uri: str
    n_customers: int
    n_queries: int
    n_segments: int


def make_customers(
    n: int, seed: int, offset: int = 0, outliers: float = 0.0
) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` customers drawn from the segment profiles; returns (frame, true segment)."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, len(_PROFILES), size=n)
    X = _PROFILES[seg] + rng.normal(size=(n, len(DEMO_FEATURES))) * _SPREAD
    n_out = round(outliers * n)
    if n_out:
        far = rng.choice(n, size=n_out, replace=False)
        X[far] = _PROFILES.max(axis=0) * rng.uniform(2.0, 3.0, size=(n_out, len(DEMO_FEATURES)))
        seg[far] = -1
    df = pd.DataFrame(X, columns=DEMO_FEATURES)
    df.insert(0, "customer_id", [f"C{offset + i:08d}" for i in range(n)])
    df["region"] = rng.choice(_REGIONS, size=n)
    return df, seg


def write_demo_data(
    folder: str | Path, n_customers: int = 200_000, n_queries: int = 10_000, seed: int = 0
) -> DemoData:
    """Write the demo customers, new customers and the true segments under ``folder``.

    Data written earlier with the same sizes and seed is reused as is, so that running the
    demo twice finds the committed run instead of recomputing (new files are a new input).
    """
    base = str(folder)
    customers = join(base, "customers")
    queries = join(base, "new-customers")
    marker = join(base, "demo.json")
    spec = {"customers": n_customers, "queries": n_queries, "seed": seed, "version": 1}
    data = DemoData(customers, queries, n_customers, n_queries, len(_PROFILES))
    if exists(marker) and json.loads(read_text(marker)) == spec:
        return data
    for uri in (marker, customers, queries):
        remove(uri)
    df, truth = make_customers(n_customers, seed)
    write_hive_parquet(df, customers, "region", parts_per_value=2)
    write_parquet(
        pd.DataFrame({"customer_id": df.customer_id, "true_segment": truth}),
        join(base, "truth.parquet"),
    )
    q, _ = make_customers(n_queries, seed + 1, offset=n_customers, outliers=0.01)
    write_hive_parquet(q, queries, "region", parts_per_value=1)
    write_text(marker, json.dumps(spec))  # last: a complete data set
    return data


def check_demo(base: str | Path, result: Any) -> list[str]:
    """Lines that compare a demo run's committed tables with the generated truth: the
    adjusted Rand index of the assignments and the most unusual new customers."""
    from sklearn.metrics import adjusted_rand_score

    truth = read_table(join(str(base), "data", "truth.parquet"))
    got = read_table(join(result.results_uri, "assignments"), ["customer_id", "segment"])
    merged = truth.merge(got, on="customer_id", how="inner")
    ari = adjusted_rand_score(merged.true_segment, merged.segment)
    lines = [
        f"Assignments: {len(got):,} rows for {len(truth):,} customers; "
        f"adjusted Rand index against the generated segments: {ari:.4f}"
    ]
    if not exists(join(result.results_uri, "scores")):
        return lines
    scores = read_table(join(result.results_uri, "scores"), ["customer_id", "kth_distance"])
    top = scores.sort_values("kth_distance", ascending=False).head(3)
    unusual = ", ".join(
        f"{i} ({d:.2f})" for i, d in zip(top.customer_id, top.kth_distance, strict=True)
    )
    lines.append(
        f"Scores: {len(scores):,} new customers; the 3 most unusual (distance to their "
        f"k-th neighbour): {unusual}"
    )
    return lines
