"""Mini-batch k-means against full Lloyd and scikit-learn's MiniBatchKMeans (issue 11).

Run (defaults: 8,000,000 rows x 32 float32 features, k=16)::

    (unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; .venv/bin/python benchmarks/bench_minibatch.py)
    .venv/bin/python benchmarks/bench_minibatch.py --rows 500000      # quick check

Seeded blobs (``kmeans_dask.synthetic.make_blobs``, 16 centres in a box of +-10,
``--std`` 8 by default: heavily overlapping, the hard case for mini-batch) are generated on a
``LocalCluster`` (2 worker processes x 1 thread), persisted there, and gathered into the
client as a numpy array for scikit-learn. Every method then fits the same data once per
``--seeds`` value (default 0, 1, 2), one after the other, with that ``random_state``:

- ``lloyd``: ``KMeans(k, init="k-means||")`` (full Lloyd; default ``tol=1e-4``,
  ``max_iter=300``);
- ``minibatch||``: ``KMeans(k, algorithm="minibatch", init="k-means||")``: the same initial
  centres as ``lloyd`` (same seed, same k-means|| passes), then mini-batch steps;
- ``minibatch++``: ``KMeans(k, algorithm="minibatch", init="k-means++")``: k-means++ on
  ``3 * batch_size`` rows of the sample pool, scikit-learn's way (two passes over the data in
  all);
- ``minibatch++x3``: the same with ``n_init=3`` (three whole runs on the sample pool, the
  lowest pool inertia kept; no extra pass over the data);
- ``minibatch++plain``: the same with ``refine=False`` (scikit-learn's rule alone, no Lloyd
  on the pool after the steps);
- ``sklearn-mbk``: ``sklearn.cluster.MiniBatchKMeans`` with the same ``batch_size``,
  ``max_no_improvement``, ``reassignment_ratio`` and its defaults otherwise (``tol=0``,
  ``n_init=1`` for k-means++), on the numpy array in the client (``--sklearn-threads``,
  default 1, like our caller-side steps);
- ``sklearn-mbk-tol``: the same with ``tol=1e-4`` (our ``tol``, same meaning).

Times are whole ``fit`` calls (kmeans_dask: copying the persisted chunks into its blocks,
init, iterations or steps, the final assignment pass; scikit-learn: its input checks and its
final labelling pass). The inertia column is recomputed for every method in float64 with
numpy from the final centres (the same check for all). Untimed warm-up fits on a slice come
first (numba compilation on the workers and the client).

``--stream``: the data as it is at cluster scale, beyond memory (mini-batch's use case):
the array is written once to Parquet under ``benchmarks/data/`` (16 files) and every
kmeans_dask fit takes a streamed ``BlockSet`` over it (``persist=False``, as the job's
``kmeans.persist: never``): every pass over the data reads the files again, and nothing
but per-row results stays on the workers. scikit-learn still fits the array in memory.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_WORKERS = 2
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CHUNK_TARGET_BYTES = 64 * 2**20


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def sq_inertia(Xn: np.ndarray, C: np.ndarray, step: int = 1 << 18) -> float:
    """Sum of squared distances to the nearest centre, in float64 (the same check for all)."""
    C = np.asarray(C, dtype=np.float64)
    cc = np.einsum("ij,ij->i", C, C)
    total = 0.0
    for s in range(0, Xn.shape[0], step):
        B = np.asarray(Xn[s : s + step], dtype=np.float64)
        d = np.einsum("ij,ij->i", B, B)[:, None] - 2.0 * (B @ C.T) + cc
        total += float(np.maximum(d.min(axis=1), 0.0).sum())
    return total


@dataclass
class Row:
    name: str
    fit_s: float
    centres: np.ndarray
    own_inertia: float
    detail: str
    inertia: float = math.nan
    notes: list[str] = field(default_factory=list)


def ours(X: Any, args: argparse.Namespace, name: str, **params: Any) -> Row:
    from kmeans_dask import KMeans

    km = KMeans(args.k, random_state=args.seed, **params)
    t, km = timed(lambda: km.fit(X(km) if callable(X) else X))
    info = km.init_info_
    if params.get("algorithm") == "minibatch":
        detail = (
            f"init {info['method']} {info['seconds'] - info['pool_seconds']:.3g} s "
            f"({info['n_passes']} passes), pool {info['pool_rows']:,} rows "
            f"{info['pool_seconds']:.3g} s, {len(info['pool_inertias'])} run(s) on the pool "
            f"{info['runs_seconds']:.3g} s; kept run: {km.n_steps_} steps "
            f"{info['steps_seconds']:.3g} s "
            f"(stop: {info['stop']}), n_iter_={km.n_iter_}, refine {info['refine_iter']} "
            f"Lloyd iterations on the pool {info['refine_seconds']:.3g} s; the rest of fit "
            f"(input into blocks, assignment pass, checks) "
            f"{t - info['seconds'] - info['runs_seconds']:.3g} s"
        )
    else:
        detail = (
            f"init {info['method']} {info['seconds']:.3g} s ({info['n_passes']} passes), "
            f"{km.n_iter_} Lloyd iterations (converged={km.converged_}), "
            f"{sum(h.seconds for h in km.history_):.3g} s; the rest of fit "
            f"{t - info['seconds'] - sum(h.seconds for h in km.history_):.3g} s"
        )
    return Row(name, t, km.cluster_centers_, float(km.inertia_), detail)


def sklearn_mbk(Xn: np.ndarray, args: argparse.Namespace, name: str, tol: float) -> Row:
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(
        args.k,
        batch_size=args.batch_size,
        max_no_improvement=10,
        reassignment_ratio=0.01,
        tol=tol,
        random_state=args.seed,
    )
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.sklearn_threads):
        t, km = timed(lambda: km.fit(Xn))
    detail = (
        f"init k-means++ on init_size rows, {km.n_steps_} steps, n_iter_={km.n_iter_}, "
        f"{args.sklearn_threads} thread(s)"
    )
    return Row(name, t, km.cluster_centers_, float(km.inertia_), detail)


def warm_up(X: Any, Xn: np.ndarray, args: argparse.Namespace) -> float:
    """Untimed fits on a slice: numba kernels compiled/loaded on the workers and client."""
    from sklearn.cluster import MiniBatchKMeans

    from kmeans_dask import KMeans

    t0 = time.perf_counter()
    n = min(args.rows, 200_000)
    Xs = X[:n].persist()
    for params in ({}, {"algorithm": "minibatch"}, {"algorithm": "minibatch", "init": "k-means++"}):
        KMeans(args.k, random_state=args.seed, max_iter=3, **params).fit(Xs)
    MiniBatchKMeans(args.k, batch_size=args.batch_size, random_state=args.seed).fit(Xn[:n])
    del Xs
    return time.perf_counter() - t0


def streamed_blocks(Xn: np.ndarray, args: argparse.Namespace) -> tuple[Any, int]:
    """A function making a streamed BlockSet over ``Xn`` written to Parquet (once; 16
    files, 4 row groups each) under ``benchmarks/data/``, and its number of blocks."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kmeans_dask.engine.blocks import BlockSet
    from kmeans_dask.engine.minibatch import pool_rate
    from kmeans_dask.engine.pool import PoolRequest
    from kmeans_dask.engine.source import BlockSource
    from kmeans_dask.io import open_dataset
    from kmeans_dask.validation import seed_from

    name = f"minibatch-{args.rows}x{args.features}-{args.dtype}-std{args.std}-seed{args.data_seed}"
    folder = Path(__file__).parent / "data" / name
    if not (folder / "_COMPLETE").exists():
        folder.mkdir(parents=True, exist_ok=True)
        per_file = -(-Xn.shape[0] // 16)
        for i, start in enumerate(range(0, Xn.shape[0], per_file)):
            part = Xn[start : start + per_file]
            table = pa.table({f"f{j:02d}": part[:, j] for j in range(part.shape[1])})
            pq.write_table(
                table, folder / f"part-{i:04d}.parquet", compression="none",
                row_group_size=-(-part.shape[0] // 4),
            )
        (folder / "_COMPLETE").write_text("ok")
    src = BlockSource.from_dataset(open_dataset(str(folder)), np.dtype(args.dtype))
    recipes = src.recipes()

    # built inside each timed fit (its summary pass is one read, as a persisted fit's copy
    # into blocks is inside its time); a mini-batch fit's pool is drawn in that pass, as
    # the job (kmeans_dask.job.prepare) asks for it
    def make(km: Any) -> Any:
        pool = None
        if km.algorithm == "minibatch":
            rate = pool_rate(src.n_rows, src.n_features, src.dtype, km.n_clusters, km.batch_size)
            pool = PoolRequest(seed_from(km.random_state), rate)
        return BlockSet.from_recipes(recipes, src.n_features, src.dtype, persist=False, pool=pool)

    return make, len(recipes)


def print_header(client: Any, args: argparse.Namespace) -> None:
    import dask
    import distributed
    import numba
    import sklearn
    from threadpoolctl import threadpool_info

    import kmeans_dask

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.platform()}; os.cpu_count()={os.cpu_count()}")
    print(
        f"versions: python {platform.python_version()}, numpy {np.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}, "
        f"scikit-learn {sklearn.__version__}, numba {numba.__version__}, "
        f"kmeans_dask {kmeans_dask.__version__}"
    )
    pools = "; ".join(f"{i['internal_api']} x{i['num_threads']}" for i in threadpool_info())
    print(f"client thread pools: {pools}")
    print(f"cluster: LocalCluster({N_WORKERS} worker processes x 1 thread)")
    print(
        f"data: {args.rows:,} x {args.features} {args.dtype} blobs, {args.k} centres, "
        f"cluster_std={args.std}, data seed {args.data_seed}; k={args.k}, "
        f"batch_size={args.batch_size}; fit seeds {args.seed_list}"
    )


def report(rows: list[Row], seed: int) -> dict[str, tuple[float, float]]:
    """Print one seed's table; returns ``{method: (time lloyd/this, inertia this/lloyd)}``."""
    print(f"\n=== fits with random_state={seed} ===")
    head = f"{'method':<16} {'fit s':>8} {'inertia (numpy, f64)':>22} {'own inertia_':>16}"
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.name:<16} {r.fit_s:>8.3f} {r.inertia:>22.9g} {r.own_inertia:>16.9g}")
    for r in rows:
        print(f"  {r.name}: {r.detail}")
    by = {r.name: r for r in rows}
    base = by["lloyd"]
    print("\nratios against full Lloyd (measured in this run):")
    goal = "goal (>= 5x, <= 1.02)"
    print(f"{'method':<16} {'time lloyd/this':>16} {'inertia this/lloyd':>19}  {goal}")
    out = {}
    for r in rows:
        if r is base:
            continue
        speed = base.fit_s / r.fit_s
        qual = r.inertia / base.inertia
        out[r.name] = (speed, qual)
        ok = "met" if speed >= 5 and qual <= 1.02 else "not met"
        print(f"{r.name:<16} {speed:>15.2f}x {qual:>19.4f}  {ok}")
    for name in ("minibatch||", "minibatch++", "minibatch++x3", "minibatch++plain"):
        if name in by and "sklearn-mbk" in by:
            a, b = by[name], by["sklearn-mbk"]
            print(
                f"{name} against sklearn-mbk: time {a.fit_s / b.fit_s:.2f}x, "
                f"inertia {a.inertia / b.inertia:.4f}"
            )
    return out


def summary(results: dict[int, dict[str, tuple[float, float]]]) -> None:
    print("\n=== summary over seeds", ", ".join(map(str, results)), "===")
    print(f"{'method':<16} {'time lloyd/this (each seed)':>34} {'inertia this/lloyd':>28}")
    for name in next(iter(results.values())):
        speeds = " ".join(f"{res[name][0]:.2f}x" for res in results.values())
        quals = " ".join(f"{res[name][1]:.4f}" for res in results.values())
        print(f"{name:<16} {speeds:>34} {quals:>28}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rows", type=int, default=8_000_000, help="rows (default 8,000,000)")
    p.add_argument("--features", type=int, default=32, help="features (default 32)")
    p.add_argument("--k", type=int, default=16, help="clusters and blob centres (default 16)")
    p.add_argument("--std", type=float, default=8.0, help="blob standard deviation (8)")
    p.add_argument("--batch-size", type=int, default=1024, help="mini-batch rows (1024)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--data-seed", type=int, default=0, help="seed of the data (0)")
    p.add_argument("--seeds", default="0,1,2", help="random_state of the fits, one run each")
    p.add_argument(
        "--methods",
        default="lloyd,minibatch||,minibatch++,minibatch++x3,minibatch++plain,sklearn-mbk,"
        "sklearn-mbk-tol",
        help="comma list (lloyd is needed for the ratios)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="kmeans_dask fits stream the data from Parquet on every pass (written once "
        "under benchmarks/data/)",
    )
    p.add_argument(
        "--sklearn-threads",
        type=int,
        default=1,
        help="OpenMP/BLAS threads of scikit-learn (default 1: with 2, its OpenMP threads "
        "spun against the idle workers here, 63 ms per 1,024-row step)",
    )
    args = p.parse_args(argv)
    args.seed_list = [int(x) for x in args.seeds.split(",") if x.strip()]
    args.seed = args.seed_list[0]
    args.method_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when redirected to a file
    logging.getLogger("kmeans_dask").setLevel(logging.WARNING)
    # load the native thread pools before the nanny sets *_NUM_THREADS=1 in this process
    import sklearn.cluster  # noqa: F401
    import threadpoolctl  # noqa: F401
    from distributed import Client, LocalCluster, wait

    import kmeans_dask  # noqa: F401
    from kmeans_dask import worker_settings
    from kmeans_dask.synthetic import make_blobs

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
        print_header(client, args)
        dtype = np.dtype(args.dtype)
        n_chunks = max(2 * N_WORKERS, math.ceil(args.rows * args.features * 8 / CHUNK_TARGET_BYTES))
        X, _, _ = make_blobs(
            n_samples=args.rows,
            n_features=args.features,
            centers=args.k,
            cluster_std=args.std,
            chunk_rows=math.ceil(args.rows / n_chunks),
            random_state=args.data_seed,
            dtype=dtype,
        )
        X = X.map_blocks(np.ascontiguousarray, dtype=dtype, meta=np.empty((0, 0), dtype=dtype))
        t_gen, X = timed(lambda: X.persist())
        wait(X)
        t_gather, Xn = timed(X.compute)
        print(
            f"generated and persisted in {t_gen:.3g} s ({X.numblocks[0]} chunks); gathered "
            f"to the client in {t_gather:.3g} s ({Xn.nbytes / 2**20:.0f} MiB)"
        )
        print(f"warm-up (untimed): {warm_up(X, Xn, args):.3g} s")
        if args.stream:
            X, n_blocks = streamed_blocks(Xn, args)
            print(f"streamed from {n_blocks} blocks of Parquet (read on every pass)")
        runs = {
            "lloyd": lambda: ours(X, args, "lloyd"),
            "minibatch||": lambda: ours(
                X, args, "minibatch||", algorithm="minibatch", batch_size=args.batch_size
            ),
            "minibatch++": lambda: ours(
                X,
                args,
                "minibatch++",
                algorithm="minibatch",
                init="k-means++",
                batch_size=args.batch_size,
            ),
            "minibatch++x3": lambda: ours(
                X,
                args,
                "minibatch++x3",
                algorithm="minibatch",
                init="k-means++",
                n_init=3,
                batch_size=args.batch_size,
            ),
            "minibatch++plain": lambda: ours(
                X,
                args,
                "minibatch++plain",
                algorithm="minibatch",
                init="k-means++",
                batch_size=args.batch_size,
                refine=False,
            ),
            "sklearn-mbk": lambda: sklearn_mbk(Xn, args, "sklearn-mbk", tol=0.0),
            "sklearn-mbk-tol": lambda: sklearn_mbk(Xn, args, "sklearn-mbk-tol", tol=1e-4),
        }
        results = {}
        for seed in args.seed_list:
            args.seed = seed
            rows = []
            for name in args.method_list:
                gc.collect()
                client.run(gc.collect)
                rows.append(runs[name]())
                print(f"seed {seed} {name}: {rows[-1].fit_s:.3f} s; {rows[-1].detail}")
            for r in rows:
                r.inertia = sq_inertia(Xn, r.centres)
            results[seed] = report(rows, seed)
        summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
