"""Benchmark chunked exact KNN scoring against scikit-learn's brute force and FAISS.

Run (defaults: 500,000 reference x 100,000 query rows, d = 32, k = 15, float64)::

    .venv/bin/python benchmarks/bench_knn.py
    .venv/bin/python benchmarks/bench_knn.py --ref 20000 --query 5000   # quick check

Seeded data is generated on a ``LocalCluster`` (2 worker processes x 1 thread), by
``--data``: ``overlapping`` Gaussian blobs (``make_blobs``, ``cluster_std=8``, the default),
``clustered`` (well separated blobs, ``cluster_std=1``: centres at least 8 std apart) or
``uniform`` (structureless, uniform in a cube); the first ``--ref`` rows are the reference,
the next ``--query`` rows the queries. Both are scaled with the reference's
``StandardScaler`` and the reference is labelled by ``KMeans(--clusters)``, as the pipeline
does. Then, one after the other:

- kmeans_dask: ``KNeighborsScorer(k, algorithm=a).fit(X_ref, labels)`` (persists the
  reference blocks; builds the landmark index unless ``a='brute'``) and
  ``predict(X_query).compute()`` on the cluster (query chunks of ``--query-chunk`` rows),
  for each ``a`` of ``--algorithm`` (a comma list, e.g. ``brute,pruned,auto``), one after the
  other; every algorithm's labels and checked neighbours must equal the first one's; with
  ``--rounds N``, N - 1 more rounds of fit + predict of every algorithm (the order rotated
  each round) and the medians of the predict times and of the per-round ratios;
- scikit-learn: ``KNeighborsClassifier(k, algorithm="brute").fit(R, y).predict(Q)`` in the
  client on the gathered numpy arrays, with the client's thread pools (2 threads);
- FAISS: ``IndexFlatL2`` (float32 only) ``add`` + ``search``, then a uniform vote, in the
  client with ``omp_set_num_threads(2)``.

Checks: the predicted labels of all three (kmeans_dask must equal scikit-learn), and on the
first ``--check`` queries the neighbour indices and distances of kmeans_dask against
``NearestNeighbors(algorithm="brute")`` and FAISS's recall@k. Untimed warm-ups compile the
numba kernels on the workers first. Memory: the workers' peak RSS, next to the size the full
distance matrix would have.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
N_WORKERS = 2


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", type=int, default=500_000, help="reference rows")
    p.add_argument("--query", type=int, default=100_000, help="query rows")
    p.add_argument("--d", type=int, default=32, help="features")
    p.add_argument("--k", type=int, default=15, help="neighbours")
    p.add_argument("--clusters", type=int, default=16, help="k-means segments (the labels)")
    p.add_argument("--query-chunk", type=int, default=10_000, help="rows per query block")
    p.add_argument("--check", type=int, default=2_000, help="queries for the index check")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-faiss", action="store_true", help="skip FAISS")
    p.add_argument(
        "--algorithm", default="brute", help="KNeighborsScorer algorithms, comma separated"
    )
    p.add_argument("--data", choices=["overlapping", "clustered", "uniform"], default="overlapping")
    p.add_argument(
        "--no-sklearn", action="store_true", help="skip scikit-learn's predict (keep the check)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fit + predict every algorithm this many times, the order rotated each round, "
        "and print the medians (the machine's drift between runs is ~10%%)",
    )
    return p.parse_args(argv)


def warm_float64_selection(d: int, k: int, dtype: str) -> None:
    """Load (compiling on first use) the kernels of the float64 selection pass."""
    from kmeans_dask.kernels.knn import block_topk

    R = np.random.default_rng(0).standard_normal((600, d)).astype(dtype)
    block_topk(R[:50], R, k, R.mean(axis=0).astype(np.float64), 0, (np.float64,))


def more_rounds(args: argparse.Namespace, runs: dict, X_ref: Any, X_q: Any, labels: Any,
                client: Any) -> None:
    """Rounds 2..``--rounds`` of every algorithm (the order rotated each round, so that no
    algorithm always runs first), then each one's predict seconds and their median, and
    the median over the rounds of the first algorithm's time over each other's."""
    import dask.array as da

    from kmeans_dask import KNeighborsScorer

    algos = list(runs)
    times = {a: [runs[a][2]] for a in algos}
    for r in range(1, args.rounds):
        shift = r % len(algos)
        for algo in algos[shift:] + algos[:shift]:
            knn = KNeighborsScorer(n_neighbors=args.k, algorithm=algo).fit(X_ref, labels)
            t, _ = timed(lambda knn=knn: da.compute(knn.predict(X_q), knn.search_stats_["delayed"]))
            times[algo].append(t)
            del knn
            client.run(gc.collect)
    print(f"\npredict seconds in {args.rounds} rounds (the order rotated each round):")
    for a in algos:
        print(f"  {a}: {', '.join(f'{t:.2f}' for t in times[a])}; median {np.median(times[a]):.2f}")
    for a in algos[1:]:
        per = [f / o for f, o in zip(times[algos[0]], times[a], strict=True)]
        print(
            f"  {algos[0]} / {a}: median of the rounds' ratios {np.median(per):.2f}x "
            f"({', '.join(f'{x:.2f}' for x in per)})"
        )


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _worker_pools() -> str:
    from threadpoolctl import threadpool_info

    return "; ".join(f"{i['internal_api']} x{i['num_threads']}" for i in threadpool_info())


def print_machine_info(client: Any) -> None:
    import dask
    import distributed
    import numba
    import sklearn
    from threadpoolctl import threadpool_info

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.platform()}; cpus {os.cpu_count()}")
    print(
        f"versions: python {platform.python_version()}, numpy {np.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}, "
        f"scikit-learn {sklearn.__version__}, numba {numba.__version__}"
    )
    pools = "; ".join(f"{i['internal_api']} x{i['num_threads']}" for i in threadpool_info())
    print(f"client thread pools: {pools}")
    for addr, pools in sorted(client.run(_worker_pools).items()):
        print(f"worker {addr} thread pools: {pools}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set (slows current OpenBLAS builds here)")


def make_data(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Scaled reference and query dask arrays (persisted) and the k-means labels."""
    import dask

    from kmeans_dask import KMeans, StandardScaler
    from kmeans_dask.synthetic import make_blobs

    n = args.ref + args.query
    dtype = np.dtype(args.dtype)
    if args.data == "uniform":
        import dask.array as da

        rng = da.random.default_rng(args.seed)
        X = rng.uniform(-1.0, 1.0, size=(n, args.d), chunks=(50_000, args.d)).astype(dtype)
    else:
        std = 8.0 if args.data == "overlapping" else 1.0
        X, _, _ = make_blobs(
            n, args.d, centers=args.clusters, cluster_std=std, chunk_rows=50_000,
            random_state=args.seed, dtype=dtype,
        )  # fmt: skip
    # persist first: every later graph starts from the same keys
    X_ref, X_q = dask.persist(X[: args.ref], X[args.ref :].rechunk((args.query_chunk, -1)))
    scaler = StandardScaler().fit(X_ref)
    X_ref, X_q = dask.persist(
        scaler.transform(X_ref).astype(dtype), scaler.transform(X_q).astype(dtype)
    )
    t, km = timed(lambda: KMeans(args.clusters, random_state=args.seed).fit(X_ref))
    print(f"labels: KMeans({args.clusters}) on the reference, {t:.2f} s, {km.n_iter_} iterations")
    return X_ref, X_q, km.labels_.persist()


def vote_uniform(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Uniform vote, ties to the smallest label (scikit-learn's rule)."""
    counts = np.zeros((labels.shape[0], n_classes), dtype=np.int64)
    for j in range(labels.shape[1]):
        np.add.at(counts, (np.arange(labels.shape[0]), labels[:, j]), 1)
    return np.argmax(counts, axis=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # load libraries with thread pools before the nanny sets *_NUM_THREADS=1 in this process
    import sklearn.neighbors  # noqa: F401
    import threadpoolctl  # noqa: F401
    from distributed import Client, LocalCluster

    from kmeans_dask import worker_settings

    try:
        import faiss
    except Exception as exc:  # pragma: no cover - optional peer
        print(f"FAISS unavailable: {type(exc).__name__}: {exc}")
        faiss = None
    from kmeans_dask import KNeighborsScorer
    from kmeans_dask.kernels.knn import TILE_QUERY, TILE_REF, n_candidates
    from kmeans_dask.kernels.knn_index import CLUSTER_ROWS
    from kmeans_dask.kernels.knn_pruned import QUERY_SLAB

    env_before = {k: os.environ.get(k) for k in THREAD_ENV}
    with (
        worker_settings(),
        LocalCluster(
            n_workers=N_WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        print_machine_info(client)
        k = args.k
        print(
            f"\n=== {args.ref:,} reference x {args.query:,} query rows, d={args.d}, k={k}, "
            f"{args.dtype}, query blocks of {args.query_chunk:,} rows ==="
        )
        X_ref, X_q, labels = make_data(args)

        # warm-up: load the kernels on the workers (numba caches them on disk too), those
        # of the landmark index included (two blocks of 20,000 rows get 9 clusters each;
        # with fewer than 4 a block has no index, and the first timed search compiled
        # them: ~7 s inside its predict)
        import dask.array as da

        rng = np.random.default_rng(1)
        small = rng.standard_normal((40_000, args.d)).astype(args.dtype)
        for algo in ("brute", "pruned", "auto"):
            warm = KNeighborsScorer(n_neighbors=k, algorithm=algo)
            warm.fit(da.from_array(small, chunks=20_000), rng.integers(0, 3, small.shape[0]))
            warm.predict(da.from_array(small[:500], chunks=250)).compute()
            del warm
        # ... and the float64 selection, which only rows the float32 pass cannot certify
        # take (compiling it took ~1.5 s in one process)
        client.run(warm_float64_selection, args.d, k, args.dtype)
        client.run(gc.collect)

        # ---------------------------------------------------------------- kmeans_dask
        runs = {}
        for algo in args.algorithm.split(","):
            rss0 = client.run(_peak_rss)
            t_fit, knn = timed(
                lambda a=algo: KNeighborsScorer(n_neighbors=k, algorithm=a).fit(X_ref, labels)
            )
            t_pred, (pred, stats) = timed(
                lambda knn=knn: da.compute(knn.predict(X_q), knn.search_stats_["delayed"])
            )
            rss1 = client.run(_peak_rss)
            runs[algo] = (knn, t_fit, t_pred, pred, rss0, rss1)
            ref_blocks = knn._ref.blocks.sizes
            print(
                f"kmeans_dask algorithm={algo!r}: fit {t_fit:.2f} s ({len(ref_blocks)} "
                f"reference blocks of {max(ref_blocks):,} rows), predict {t_pred:.2f} s "
                f"({len(X_q.chunks[0]) * len(ref_blocks)} pair tasks); distances skipped "
                f"{stats['skipped_fraction']:.4f} ({stats['computed']:,} of {stats['total']:,} "
                "computed)"
            )
            n_dist = args.ref * args.query
            print(f"  {t_pred / n_dist * 1e9 * N_WORKERS:.3f} ns per distance per core")
            del knn
            client.run(gc.collect)
        first = next(iter(runs))
        knn, t_fit, t_pred, pred, rss0, rss1 = runs[first]
        for algo, run in runs.items():
            if algo != first:
                print(
                    f"  {first} / {algo}: predict {t_pred / run[2]:.2f}x, fit + predict "
                    f"{(t_fit + t_pred) / (run[1] + run[2]):.2f}x; labels equal "
                    f"{np.mean(run[3] == pred):.6f}"
                )
        if args.rounds > 1:
            more_rounds(args, runs, X_ref, X_q, labels, client)

        # ---------------------------------------------------------------- peers (client)
        R, Q, y = da.compute(X_ref, X_q, labels)
        from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

        sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute")
        t_sk_fit, _ = timed(lambda: sk.fit(R, y))
        t_sk, sk_pred = (None, None) if args.no_sklearn else timed(lambda: sk.predict(Q))
        if t_sk is not None:
            print(f"scikit-learn brute: fit {t_sk_fit:.2f} s, predict {t_sk:.2f} s")
        t_fs = None
        if faiss is not None and not args.no_faiss:
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            R32 = np.ascontiguousarray(R, dtype=np.float32)
            Q32 = np.ascontiguousarray(Q, dtype=np.float32)

            def faiss_run() -> tuple[np.ndarray, np.ndarray]:
                index = faiss.IndexFlatL2(R32.shape[1])
                index.add(R32)
                _, ind = index.search(Q32, k)
                return vote_uniform(np.asarray(y)[ind], int(y.max()) + 1), ind

            t_fs, (fs_pred, fs_ind) = timed(faiss_run)
            print(f"FAISS IndexFlatL2 (float32, add + search + vote): {t_fs:.2f} s")

        # ---------------------------------------------------------------- checks
        m = min(args.check, args.query)
        d_sk, i_sk = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(R).kneighbors(Q[:m])
        print("\nchecks")
        for algo, run in runs.items():
            d_ours, i_ours = run[0].kneighbors(Q[:m])
            if sk_pred is not None:
                print(f"  {algo}: predicted labels equal to scikit-learn: "
                      f"{np.mean(run[3] == sk_pred):.6f}")  # fmt: skip
            print(
                f"  {algo}: first {m} queries: indices equal {np.mean(i_ours == i_sk):.6f}, "
                f"max |distance diff| {np.abs(d_ours - d_sk).max():.2e}"
            )
            if algo != first:
                d0, i0 = knn.kneighbors(Q[:m])
                same = np.array_equal(i0, i_ours) and np.array_equal(d0, d_ours)
                print(f"  {algo}: first {m} queries identical to {first} (bit for bit): {same}")
        if t_fs is not None:
            recall = np.mean(
                [len(set(a) & set(b)) / k for a, b in zip(fs_ind[:m], i_sk, strict=True)]
            )
            if sk_pred is not None:
                print(f"  FAISS labels equal to scikit-learn: {np.mean(fs_pred == sk_pred):.6f}")
            print(f"  FAISS recall@{k} (first {m} queries, float32): {recall:.6f}")

        print("\nmemory")
        full = n_dist * 8
        peak = max(rss1.values())
        grew = max(rss1[w] - rss0[w] for w in rss1)
        q_block = max(X_q.chunks[0])
        pair = q_block * k * 24 + q_block * n_candidates(k) * 12 + TILE_QUERY * TILE_REF * 4
        print(f"  full distance matrix would be {full / 2**30:,.1f} GiB (never built)")
        print(
            f"  per pair task: top-k + candidate heaps + one {TILE_QUERY}x{TILE_REF} tile "
            f"= {pair / 2**20:.1f} MiB (besides its query and reference block)"
        )
        print(
            f"  worker peak RSS {peak / 2**20:,.0f} MiB (grew by at most "
            f"{grew / 2**20:,.0f} MiB during the first fit + predict)"
        )
        n_blk = max(knn._ref.blocks.sizes)
        n_cl = n_blk // CLUSTER_ROWS
        index = n_blk * (args.d * 4 + 4 + 8) + n_cl * (args.d + 1) * 8
        slab = min(q_block, QUERY_SLAB)
        print(
            f"  pruned: landmark index {index / 2**20:.1f} MiB per reference block "
            f"(float32 rows + order, {n_cl} clusters); per pair task, besides the above, "
            f"bounds of {slab} queries x {n_cl} clusters = {2 * slab * n_cl * 8 / 2**20:.1f} MiB"
        )
        for algo, run in runs.items():
            print(
                f"  {algo}: workers' peak RSS after its fit + predict "
                f"{max(run[5].values()) / 2**20:,.0f} MiB"
            )

        print("\nratios (scoring = predict; fit + predict in brackets)")
        if t_sk is not None:
            print(
                f"  scikit-learn / kmeans_dask ({first}): {t_sk / t_pred:.2f}x "
                f"({(t_sk + t_sk_fit) / (t_pred + t_fit):.2f}x)"
            )
        if t_fs is not None:
            both = t_fs / (t_pred + t_fit)
            print(f"  FAISS / kmeans_dask ({first}):        {t_fs / t_pred:.2f}x ({both:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
