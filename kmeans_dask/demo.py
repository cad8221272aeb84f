"""`kmeans-dask demo`: the engine on an embedded LocalCluster and seeded synthetic data."""

from __future__ import annotations

import logging
import time

import numpy as np

from .kmeans import KMeans
from .metrics import adjusted_rand_score
from .synthetic import make_blobs

__all__ = ["run_demo"]


def run_demo(
    n_samples: int = 1_000_000,
    n_features: int = 16,
    n_clusters: int = 8,
    n_workers: int | None = None,
    random_state: int = 0,
    print_fn=print,
) -> dict:
    """Generate blobs on a local cluster, fit KMeans, and report what happened.

    Returns the reported figures as a dict (k, inertia, n_iter, ari, seconds).
    """
    import os

    from distributed import Client, LocalCluster

    n_workers = n_workers or max(1, min(os.cpu_count() or 1, 4))
    logging.getLogger("kmeans_dask").setLevel(logging.WARNING)
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        print_fn(f"Local Dask cluster: {n_workers} workers; dashboard {client.dashboard_link}")
        X, y, _ = make_blobs(
            n_samples, n_features, n_clusters, cluster_std=1.5, random_state=random_state
        )
        print_fn(
            f"Data: {n_samples:,} rows x {n_features} features, {n_clusters} seeded blobs "
            f"(generated on the workers)"
        )
        t0 = time.perf_counter()
        km = KMeans(n_clusters, random_state=random_state)
        km.fit(X)
        seconds = time.perf_counter() - t0
        ari = adjusted_rand_score(y, km.labels_)
        report = {
            "k": n_clusters,
            "inertia": km.inertia_,
            "n_iter": km.n_iter_,
            "ari": ari,
            "seconds": seconds,
            "init_seconds": km.init_info_["seconds"],
        }
        print_fn(
            f"KMeans(k={n_clusters}, init='k-means||'): inertia {km.inertia_:.6g}, "
            f"{km.n_iter_} Lloyd iteration(s), converged={km.converged_}"
        )
        for h in km.history_:
            print_fn(
                f"  iteration {h.iteration}: inertia {h.inertia:.6g}, shift {h.center_shift:.3g}"
            )
        print_fn(f"Adjusted Rand index against the true blobs: {ari:.4f}")
        print_fn(
            f"Time: {seconds:.2f} s (init {km.init_info_['seconds']:.2f} s, "
            f"{km.init_info_['n_passes']} passes)"
        )
        print_fn(f"Centre norms: {np.round(np.linalg.norm(km.cluster_centers_, axis=1), 2)}")
    return report
