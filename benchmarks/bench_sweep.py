"""K sweep and silhouette metrics of kmeans_dask against scikit-learn, in one run.

    python benchmarks/bench_sweep.py [--rows 2000000] [--features 32] [--centers 8]
                                     [--kmin 2] [--kmax 12] [--samples 10000,20000,50000]

* Sweep: ``kmeans_dask.sweep.sweep_k`` over K = kmin..kmax on data persisted on a
  ``LocalCluster(2 workers x 1 thread)`` (fits run concurrently; each K also gets its four
  metrics and the stratified-sample silhouette of ``--sweep-sample`` rows), against a loop of
  ``sklearn.cluster.KMeans(k, n_init=1)`` fits on the same numpy data (no metrics).
* Silhouette: for the labels of one K, ``silhouette_full_sq_score`` over all rows and
  ``silhouette_sample_score`` at each sample size, against
  ``sklearn.metrics.silhouette_score(sample_size=...)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

# import the numeric libraries before the cluster starts: starting a LocalCluster sets the
# OMP/MKL/OpenBLAS thread variables of this process to 1, which would hobble scikit-learn
import sklearn.cluster

import sklearn.metrics  # noqa: F401  isort: skip

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--centers", type=int, default=8)
    p.add_argument("--kmin", type=int, default=2)
    p.add_argument("--kmax", type=int, default=12)
    p.add_argument("--sweep-sample", type=int, default=20_000)
    p.add_argument("--samples", default="10000,20000,50000")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sizes = [int(s) for s in args.samples.split(",") if s]

    from distributed import Client, LocalCluster, wait
    from sklearn.cluster import KMeans as SKKMeans
    from sklearn.metrics import silhouette_score

    import kmeans_dask
    from kmeans_dask import worker_settings
    from kmeans_dask.metrics import silhouette_full_sq_score, silhouette_sample_score
    from kmeans_dask.sweep import sweep_k
    from kmeans_dask.synthetic import make_blobs

    saved = {v: os.environ.get(v) for v in _THREAD_VARS}
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.platform()}; cpus={os.cpu_count()}; "
        f"kmeans_dask {kmeans_dask.__version__}"
    )
    ks = list(range(args.kmin, args.kmax + 1))
    with (
        worker_settings(),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        for v, val in saved.items():  # give scikit-learn its threads back
            if val is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = val
        X, _, _ = make_blobs(
            args.rows, args.features, args.centers, cluster_std=2.0, random_state=args.seed
        )
        X = X.persist()
        wait(X)
        Xn = X.compute()
        print(
            f"data: {args.rows:,} x {args.features} blobs ({args.centers} centres), "
            f"K = {ks[0]}..{ks[-1]}"
        )

        t_sweep, res = _timed(
            lambda: sweep_k(X, ks, silhouette_sample_size=args.sweep_sample, random_state=args.seed)
        )
        print(f"\nkmeans_dask sweep_k: {t_sweep:.2f} s, chose K={res.k} by {res.rule}")
        cols = [
            "k",
            "inertia",
            "silhouette_sample",
            "silhouette_full_sq",
            "n_iter",
            "fit_seconds",
            "metrics_seconds",
        ]
        print(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))

        sk_times = []
        for k in ks:
            t, _ = _timed(lambda k=k: SKKMeans(k, n_init=1, random_state=args.seed).fit(Xn))
            sk_times.append(t)
        t_loop = sum(sk_times)
        print(
            f"\nscikit-learn loop of KMeans(k, n_init=1).fit: {t_loop:.2f} s "
            f"({', '.join(f'{t:.2f}' for t in sk_times)})"
        )
        print(
            f"ratio sweep / scikit-learn loop: {t_sweep / t_loop:.2f}x (target < 1; the sweep "
            "also computes four metrics per K, the loop none)"
        )

        labels = res.model.labels_
        labels_np = labels.compute()
        silhouette_full_sq_score(X, labels)  # warm-up (numba/JIT, imports)
        t_full, full = _timed(lambda: silhouette_full_sq_score(X, labels))
        print(f"\nsilhouette metrics for K={res.k}:")
        print(
            f"  kmeans_dask silhouette_full_sq over all {args.rows:,} rows: {t_full:.3f} s "
            f"(value {full:.4f})"
        )
        sk_first = None
        for s in sizes:
            t_sk, v_sk = _timed(
                lambda s=s: silhouette_score(Xn, labels_np, sample_size=s, random_state=0)
            )
            t_ours, v_ours = _timed(
                lambda s=s: silhouette_sample_score(X, labels, sample_size=s, random_state=0)
            )
            sk_first = sk_first or t_sk
            print(
                f"  sample {s:>6,}: scikit-learn silhouette_score {t_sk:.3f} s ({v_sk:.4f}); "
                f"kmeans_dask silhouette_sample {t_ours:.3f} s ({v_ours:.4f}); "
                f"ratio {t_ours / t_sk:.2f}x"
            )
        if sk_first:
            print(
                f"  full_sq over all rows / scikit-learn at {sizes[0]:,}: "
                f"{t_full / sk_first:.2f}x (target < 1)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
