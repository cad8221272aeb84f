"""`kmeans-dask demo`: synthetic customers with a known segment structure, then the full job.

The data is written as Hive-partitioned Parquet (``region=*/``) to a local folder, together
with a set of new customers to score (some of them far from every segment, so the outlier
score has something to find); then ``configs/demo.yaml`` runs on an embedded LocalCluster.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DEMO_FEATURES", "DemoData", "make_customers", "write_demo_data"]

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


def _write(df: pd.DataFrame, folder: Path, parts_per_region: int) -> None:
    for region, sub in df.groupby("region", sort=True):
        out = folder / f"region={region}"
        out.mkdir(parents=True, exist_ok=True)
        sub = sub.drop(columns="region")
        bounds = np.linspace(0, len(sub), parts_per_region + 1).astype(int)
        for i in range(parts_per_region):
            chunk = sub.iloc[bounds[i] : bounds[i + 1]]
            buf = io.BytesIO()
            chunk.to_parquet(buf, index=False)
            (out / f"part-{i:03d}.parquet").write_bytes(buf.getvalue())


def write_demo_data(
    folder: str | Path, n_customers: int = 200_000, n_queries: int = 10_000, seed: int = 0
) -> DemoData:
    """Write the demo customers and new customers under ``folder``.

    Data written earlier with the same sizes and seed is reused as is, so that running the
    demo twice finds the committed run instead of recomputing (new files are a new input).
    """
    import json
    import shutil

    base = Path(folder)
    customers = base / "customers"
    queries = base / "new-customers"
    marker = base / "demo.json"
    spec = {"customers": n_customers, "queries": n_queries, "seed": seed, "version": 1}
    data = DemoData(str(customers), str(queries), n_customers, n_queries, len(_PROFILES))
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return data
    marker.unlink(missing_ok=True)
    for p in (customers, queries):
        shutil.rmtree(p, ignore_errors=True)
    df, truth = make_customers(n_customers, seed)
    _write(df, customers, parts_per_region=2)
    pd.DataFrame({"customer_id": df.customer_id, "true_segment": truth}).to_parquet(
        base / "truth.parquet", index=False
    )
    q, _ = make_customers(n_queries, seed + 1, offset=n_customers, outliers=0.01)
    _write(q, queries, parts_per_region=1)
    marker.write_text(json.dumps(spec))  # last: a complete data set
    return data
