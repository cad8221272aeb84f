"""Benchmark kmeans_dask against a numpy GEMM floor, scikit-learn and dask-ml.

Run (defaults: 2,000,000 rows x 32 features, k=16, 10 Lloyd iterations, float64 and float32)::

    .venv/bin/python benchmarks/bench_kmeans.py
    .venv/bin/python benchmarks/bench_kmeans.py --rows 200000 --iters 5   # quick check

For every dtype the same seeded, heavily overlapping blobs (``cluster_std=8``, so Lloyd keeps
moving for all the iterations) are generated once on a ``LocalCluster`` (2 worker processes x 1
thread), persisted there for kmeans_dask and dask-ml, and gathered into the client as a numpy
array for numpy and scikit-learn. Everything runs one step at a time.

What is measured:

- GEMM floor: one ``(n x d) @ (d x k)`` numpy product in the client (best of 3).
- Initialisation: kmeans_dask k-means|| (``init_info_["seconds"]``, the init call only),
  ``sklearn.cluster.kmeans_plusplus`` (timed directly) and dask-ml k-means|| (its
  ``init_scalable`` call, timed from dask-ml's own log records). The "fit diff" column is
  ``fit(init=k-means||, max_iter=1) - fit(init=array, max_iter=1)`` for the two Dask methods.
- Lloyd: every method starts from the same centres (``kmeans_plusplus`` output) and runs
  ``--iters`` iterations with ``tol=0``. Per-iteration time is given three ways:

  * isolated: kmeans_dask — median of ``history_[i].seconds`` over the iterations after the
    first (each timed where it runs: on the worker that leads a batch of iterations, from the
    choice of its pass to its M-step; the log records come in bursts of a batch, so their
    gaps measure nothing since session 20); dask-ml — median duration of its ``Lloyd loop`` log
    timers; scikit-learn (no hook) — the marginal estimate below;
  * fit/n_iter: whole ``fit`` wall time divided by ``n_iter_`` (includes input checks,
    persisting blocks and the final assignment pass, so it overstates);
  * marginal: ``(fit(max_iter=iters) - fit(max_iter=1)) / (n_iter_ - 1)``.

Untimed warm-up fits run first so that numba compilation (workers and client) is not timed.

``--converge`` (issue 13, the pruned exact Lloyd) instead runs the Lloyd phase to convergence
(``--tol``, ``--max-iter``) from one k-means++ start for every k of ``--ks`` (blobs with
``centers=k`` and ``--cluster-std``): kmeans_dask ``algorithm="lloyd"`` and ``"bounds"``
against scikit-learn's ``lloyd`` and ``elkan`` (same start, same tol). Reported per method:
fit wall time, Lloyd phase (kmeans_dask: the sum of its per-iteration times; scikit-learn:
its fit, which also includes input checks and a final labelling pass), n_iter, inertia, and
for bounds the distances spared and whether its centres equal plain Lloyd's bit for bit::

    .venv/bin/python benchmarks/bench_kmeans.py --converge --ks 16,64,256
    .venv/bin/python benchmarks/bench_kmeans.py --converge --ks 16 --rows 20000   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import os
import platform
import shlex
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PEERS = ("sklearn", "dask-ml")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
N_WORKERS = 2
CHUNK_TARGET_BYTES = 64 * 2**20


# ---------------------------------------------------------------------------- helpers
class _Stamps(logging.Handler):
    """Records ``time.perf_counter()`` and the message of every log record it receives."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.perf_counter(), record.getMessage()))

    def clear(self) -> None:
        self.records.clear()

    def times(self, prefix: str) -> list[float]:
        return [t for t, msg in self.records if msg.startswith(prefix)]


@contextlib.contextmanager
def stamped(*names: str) -> Iterator[_Stamps]:
    """Attach a :class:`_Stamps` handler at DEBUG to the named loggers (not propagated;
    kmeans_dask's Lloyd iterations are DEBUG records)."""
    handler = _Stamps()
    saved = []
    for name in names:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def paired_durations(stamps: _Stamps, start: str, end: str) -> list[float]:
    """Durations between matching start/end records (in order)."""
    starts, ends = stamps.times(start), stamps.times(end)
    return [e - s for s, e in zip(starts, ends, strict=False)]


def marginal(t_iters: float, t_one: float, n_iter: int) -> float | None:
    return (t_iters - t_one) / (n_iter - 1) if n_iter > 1 else None


def fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def reason(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _worker_threadpools() -> list[str]:
    from threadpoolctl import threadpool_info

    return [
        f"{i['internal_api']} {i.get('version')} x{i['num_threads']}" for i in threadpool_info()
    ]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_machine_info(client: Any) -> None:
    import dask
    import distributed
    import numba
    import sklearn
    from threadpoolctl import threadpool_info

    import kmeans_dask

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"machine: {platform.platform()}; {cpu_model()}")
    print(f"cpus: os.cpu_count()={os.cpu_count()}, usable={affinity}")
    try:
        import dask_ml

        dml = dask_ml.__version__
    except Exception as exc:
        dml = f"unavailable ({type(exc).__name__})"
    print(
        f"versions: python {platform.python_version()}, numpy {np.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}, "
        f"scikit-learn {sklearn.__version__}, numba {numba.__version__}, "
        f"dask-ml {dml}, kmeans_dask {kmeans_dask.__version__}"
    )
    print("client thread pools (threadpoolctl.threadpool_info()):")
    for info in threadpool_info():
        if affinity and info["num_threads"] < affinity:
            print(f"  WARNING: the next pool runs {info['num_threads']} of {affinity} threads")
        print(
            f"  {info['user_api']:>7} {info['internal_api']:<10} {info.get('version')} "
            f"num_threads={info['num_threads']} "
            f"{info.get('threading_layer', '')} {info.get('architecture', '')} "
            f"{os.path.basename(info['filepath'])}"
        )
    workers = client.run(_worker_threadpools)
    for addr, pools in sorted(workers.items()):
        print(f"worker {addr} thread pools: {'; '.join(pools)}")


# ---------------------------------------------------------------------------- results
@dataclass
class Row:
    name: str
    init_s: float | None = None
    init_fitdiff_s: float | None = None
    init_passes: str = "-"
    fit_s: float | None = None
    n_iter: int | None = None
    iter_isolated: float | None = None
    iter_fit: float | None = None
    iter_marginal: float | None = None
    inertia: float | None = None
    centres: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def print_table(dtype: np.dtype, args: argparse.Namespace, gemm: float, rows: list[Row]) -> None:
    print()
    print(
        f"=== dtype {dtype.name}: {args.rows:,} rows x {args.features} features, k={args.k}, "
        f"{args.iters} Lloyd iterations (tol=0) ==="
    )
    print(f"numpy GEMM floor (n x d) @ (d x k), best of 3: {gemm:.4g} s")
    head = (
        f"{'method':<12} {'init s':>9} {'fit diff s':>10} {'passes':>6} {'fit s':>9} "
        f"{'n_iter':>6} {'iter s':>9} {'fit/n_iter':>10} {'marginal':>9} {'inertia':>15}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.name:<12} {fmt(r.init_s):>9} {fmt(r.init_fitdiff_s):>10} {r.init_passes:>6} "
            f"{fmt(r.fit_s):>9} {fmt(r.n_iter, 'd'):>6} {fmt(r.iter_isolated):>9} "
            f"{fmt(r.iter_fit):>10} {fmt(r.iter_marginal):>9} {fmt(r.inertia, '.9g'):>15}"
        )
    for r in rows:
        if r.iter_marginal is not None and r.iter_marginal <= 0:
            r.notes.append("marginal <= 0: timing noise dominates at this size")
        for note in r.notes:
            print(f"  note [{r.name}]: {note}")

    by = {r.name: r for r in rows}
    kd = by["kmeans_dask"]
    sk = by.get("sklearn", Row("sklearn"))
    dm = by.get("dask-ml", Row("dask-ml"))
    print(
        "inertia: sum of squared distances of all rows to the final centres, recomputed in "
        "float64 with numpy for every method"
    )
    print("ratios                              iter s (isolated)  fit/n_iter  marginal")
    pairs = [
        ("kmeans_dask / sklearn   (per iter)", kd, sk),
        ("dask-ml / kmeans_dask   (per iter)", dm, kd),
    ]
    for label, a, b in pairs:
        print(
            f"  {label}  {ratio(a.iter_isolated, b.iter_isolated):>15}  "
            f"{ratio(a.iter_fit, b.iter_fit):>10}  {ratio(a.iter_marginal, b.iter_marginal):>8}"
        )
    print(
        f"  kmeans_dask / GEMM      (per iter)  {ratio(kd.iter_isolated, gemm):>15}  "
        f"{ratio(kd.iter_fit, gemm):>10}  {ratio(kd.iter_marginal, gemm):>8}"
    )
    print("                                        init s  fit diff")
    print(f"  kmeans_dask / sklearn   (init)    {ratio(kd.init_s, sk.init_s):>10}  {'-':>8}")
    print(
        f"  dask-ml / kmeans_dask   (init)    {ratio(dm.init_s, kd.init_s):>10}  "
        f"{ratio(dm.init_fitdiff_s, kd.init_fitdiff_s):>8}"
    )


# ---------------------------------------------------------------------------- methods
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


def bench_gemm(Xn: np.ndarray, C0: np.ndarray) -> float:
    B = np.ascontiguousarray(C0.T)  # (d x k)
    # a preallocated, already-touched output: otherwise page faults of a fresh (n x k)
    # buffer dominate at large n (seen here: 1.4 s instead of ~0.2 s at 8M x 32)
    out = np.ones((Xn.shape[0], B.shape[1]), dtype=np.result_type(Xn, B))
    best = math.inf
    for _ in range(3):
        t, _ = timed(lambda: np.matmul(Xn, B, out=out))
        best = min(best, t)
    return best


def bench_kmeans_dask(X: Any, C0: np.ndarray, args: argparse.Namespace) -> Row:
    from distributed import default_client

    from kmeans_dask import KMeans
    from kmeans_dask.engine.blocks import get_client

    assert get_client() is default_client(), "kmeans_dask must see the benchmark's client"
    row = Row("kmeans_dask")
    k, seed, iters = args.k, args.seed, args.iters

    def par(max_iter: int) -> KMeans:
        return KMeans(k, init="k-means||", max_iter=max_iter, tol=0, random_state=seed)

    def arr(max_iter: int) -> KMeans:
        return KMeans(k, init=C0, max_iter=max_iter, tol=0, random_state=seed)

    # warm-up (numba kernels on the workers: k-means||, Lloyd, assignment)
    t_warm, km = timed(lambda: par(1).fit(X))
    del km
    row.notes.append(f"warm-up fit (k-means||, max_iter=1, untimed in table): {t_warm:.3g} s")

    t_par1, km = timed(lambda: par(1).fit(X))
    row.init_s = float(km.init_info_["seconds"])
    row.init_passes = str(km.init_info_["n_passes"])
    del km
    t_arr1, km = timed(lambda: arr(1).fit(X))
    del km
    row.init_fitdiff_s = t_par1 - t_arr1

    row.fit_s, km = timed(lambda: arr(iters).fit(X))
    row.n_iter = int(km.n_iter_)
    row.centres = km.cluster_centers_
    secs = [h.seconds for h in km.history_[1:]]
    if secs:
        row.iter_isolated = statistics.median(secs)
        row.notes.append(
            f"Lloyd iterations after the first: median {statistics.median(secs):.4g} s, "
            f"min {min(secs):.4g}, max {max(secs):.4g} (n={len(secs)})"
        )
    row.iter_fit = row.fit_s / row.n_iter
    row.iter_marginal = marginal(row.fit_s, t_arr1, row.n_iter)
    del km
    return row


def bench_sklearn(Xn: np.ndarray, C0: np.ndarray, t_kpp: float, args: argparse.Namespace) -> Row:
    from sklearn.cluster import KMeans

    row = Row("sklearn")
    row.init_s = t_kpp
    row.notes.append("init = sklearn.cluster.kmeans_plusplus(X, k) timed directly")

    def arr(max_iter: int) -> KMeans:
        return KMeans(
            args.k,
            init=C0,
            n_init=1,
            max_iter=max_iter,
            tol=0,
            algorithm="lloyd",
            random_state=args.seed,
        )

    # warm-up (OpenMP pool start, first-call overheads)
    t_warm, km = timed(lambda: arr(1).fit(Xn))
    row.notes.append(f"warm-up fit (init=array, max_iter=1, untimed in table): {t_warm:.3g} s")
    t_one, km = timed(lambda: arr(1).fit(Xn))
    del km
    row.fit_s, km = timed(lambda: arr(args.iters).fit(Xn))
    row.n_iter = int(km.n_iter_)
    row.centres = km.cluster_centers_
    if row.n_iter < args.iters:
        row.notes.append(f"stopped early by strict convergence after {row.n_iter} iterations")
    row.iter_fit = row.fit_s / row.n_iter
    row.iter_marginal = marginal(row.fit_s, t_one, row.n_iter)
    row.iter_isolated = row.iter_marginal
    row.notes.append("iter s (isolated) = marginal (no per-iteration hook)")
    del km
    return row


def bench_dask_ml(X: Any, C0: np.ndarray, args: argparse.Namespace) -> Row:
    from dask_ml.cluster import KMeans

    row = Row("dask-ml")
    k, seed, iters = args.k, args.seed, args.iters
    # dask_ml.utils._timed (around init_scalable) logs through the root logger
    loggers = ("dask_ml.cluster.k_means", "")

    def arr(max_iter: int) -> KMeans:
        return KMeans(n_clusters=k, init=C0, max_iter=max_iter, tol=0, random_state=seed)

    # warm-up (numba _centers_dense on the workers)
    t_warm, km = timed(lambda: arr(1).fit(X))
    del km
    row.notes.append(f"warm-up fit (init=array, max_iter=1, untimed in table): {t_warm:.3g} s")

    t_one, km = timed(lambda: arr(1).fit(X))
    del km
    with stamped(*loggers) as stamps:
        row.fit_s, km = timed(lambda: arr(iters).fit(X))
        loops = paired_durations(stamps, "Starting Lloyd loop", "Finished Lloyd loop")
    row.n_iter = int(km.n_iter_)
    row.centres = np.asarray(km.cluster_centers_)
    row.notes.append(
        f"its inertia_ = {float(km.inertia_):.9g} is a sum of unsquared distances "
        "(dask-ml computes the final labels with squared=False)"
    )
    del km
    if loops:
        row.iter_isolated = statistics.median(loops)
        row.notes.append(
            f"Lloyd loop timers: median {statistics.median(loops):.4g} s, "
            f"min {min(loops):.4g}, max {max(loops):.4g} (n={len(loops)})"
        )
    row.iter_fit = row.fit_s / row.n_iter
    row.iter_marginal = marginal(row.fit_s, t_one, row.n_iter)

    with stamped(*loggers) as stamps:
        t_par1, km = timed(
            lambda: KMeans(n_clusters=k, init="k-means||", max_iter=1, random_state=seed).fit(X)
        )
        init = paired_durations(stamps, "Starting init_scalable", "Finished init_scalable")
        rounds = len(stamps.times("Starting init iteration"))
    del km
    row.init_fitdiff_s = t_par1 - t_one
    row.init_s = init[0] if init else None
    row.init_passes = f"{rounds + 1}"
    row.notes.append(
        f"k-means|| fit (max_iter=1) {t_par1:.4g} s; init s = init_scalable log timer; "
        f"{rounds} sampling rounds (+1 cost pass)"
    )
    return row


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="rows (default 2,000,000)")
    p.add_argument("--features", type=int, default=32, help="features (default 32)")
    p.add_argument("--k", type=int, default=16, help="clusters (default 16)")
    p.add_argument("--iters", type=int, default=10, help="fixed Lloyd iterations (default 10)")
    p.add_argument("--dtypes", default="float64,float32", help="comma list (float64,float32)")
    p.add_argument("--peers", default=",".join(PEERS), help="comma list of sklearn,dask-ml")
    p.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=0,
        help="rows per chunk of the persisted dask array (0: about 64 MiB of float64 per "
        "chunk and at least 2 chunks per worker)",
    )
    p.add_argument(
        "--converge",
        action="store_true",
        help="Lloyd to convergence for every k of --ks: plain and bounds vs scikit-learn's "
        "lloyd and elkan (issue 13)",
    )
    p.add_argument("--ks", default="", help="comma list of k for --converge (default: --k)")
    p.add_argument("--tol", type=float, default=1e-4, help="--converge tolerance (1e-4)")
    p.add_argument("--max-iter", type=int, default=300, help="--converge max_iter (300)")
    p.add_argument(
        "--cluster-std", type=float, default=8.0, help="blob standard deviation (default 8)"
    )
    args = p.parse_args(argv)
    if args.converge:
        args.k_list = [int(x) for x in args.ks.split(",") if x.strip()] if args.ks else [args.k]
    if args.iters < 2:
        p.error("--iters must be >= 2 (per-iteration times come from iteration differences)")
    args.dtype_list = [np.dtype(s.strip()) for s in args.dtypes.split(",") if s.strip()]
    for dt in args.dtype_list:
        if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
            p.error(f"--dtypes: {dt} is not float64 or float32")
    args.peer_list = [s.strip() for s in args.peers.split(",") if s.strip()]
    bad = [s for s in args.peer_list if s not in PEERS]
    if bad:
        p.error(f"--peers: unknown {bad}; choose from {list(PEERS)}")
    if args.chunk_rows <= 0:
        n_chunks = max(2 * N_WORKERS, math.ceil(args.rows * args.features * 8 / CHUNK_TARGET_BYTES))
        args.chunk_rows = math.ceil(args.rows / n_chunks)
    return args


def run_dtype(client: Any, dtype: np.dtype, args: argparse.Namespace) -> None:
    from distributed import wait
    from sklearn.cluster import kmeans_plusplus

    from kmeans_dask.synthetic import make_blobs

    X, _, _ = make_blobs(
        n_samples=args.rows,
        n_features=args.features,
        centers=args.k,
        cluster_std=args.cluster_std,
        chunk_rows=args.chunk_rows,
        random_state=args.seed,
        dtype=dtype,
    )
    X = X.map_blocks(np.ascontiguousarray, dtype=dtype, meta=np.empty((0, 0), dtype=dtype))
    t0 = time.perf_counter()
    X = X.persist()
    wait(X)
    t_gen = time.perf_counter() - t0
    t_gather, Xn = timed(X.compute)
    print()
    print(
        f"[{dtype.name}] data generated and persisted on the workers in {t_gen:.3g} s as "
        f"{X.numblocks[0]} chunks of <= {args.chunk_rows:,} rows; gathered to the client in "
        f"{t_gather:.3g} s ({Xn.nbytes / 2**20:.0f} MiB)"
    )

    # the same initial centres for every method; its time is scikit-learn's init time
    t_kpp, (C0, _) = timed(lambda: kmeans_plusplus(Xn, args.k, random_state=args.seed))
    C0 = np.ascontiguousarray(C0, dtype=dtype)
    gemm = bench_gemm(Xn, C0)

    rows = [bench_kmeans_dask(X, C0, args)]
    gc.collect()
    for peer in args.peer_list:
        try:
            if peer == "sklearn":
                rows.append(bench_sklearn(Xn, C0, t_kpp, args))
            else:
                rows.append(bench_dask_ml(X, C0, args))
        except Exception as exc:
            msg = reason(exc)
            print(f"[{dtype.name}] peer {peer} skipped: {msg}")
            row = Row(peer)
            row.notes.append(f"skipped: {msg}")
            rows.append(row)
        gc.collect()

    for r in rows:
        if r.centres is not None:
            r.inertia = sq_inertia(Xn, r.centres)
    print_table(dtype, args, gemm, rows)


def run_converge(client: Any, dtype: np.dtype, k: int, args: argparse.Namespace) -> None:
    """Lloyd to convergence from one start: kmeans_dask plain and bounds, scikit-learn's
    lloyd and elkan (see the module docstring)."""
    import dask
    from distributed import wait
    from sklearn.cluster import KMeans as SKKMeans
    from sklearn.cluster import kmeans_plusplus

    from kmeans_dask import KMeans
    from kmeans_dask.synthetic import make_blobs

    X, _, _ = make_blobs(
        n_samples=args.rows,
        n_features=args.features,
        centers=k,
        cluster_std=args.cluster_std,
        chunk_rows=args.chunk_rows,
        random_state=args.seed,
        dtype=dtype,
    )
    X = X.map_blocks(np.ascontiguousarray, dtype=dtype, meta=np.empty((0, 0), dtype=dtype))
    X = X.persist()
    wait(X)
    Xn = X.compute()
    C0, _ = kmeans_plusplus(Xn, k, random_state=args.seed)
    C0 = np.ascontiguousarray(C0, dtype=dtype)

    def ours(algorithm: str, max_iter: int) -> KMeans:
        return KMeans(k, init=C0, algorithm=algorithm, max_iter=max_iter, tol=args.tol)

    def theirs(algorithm: str, max_iter: int) -> SKKMeans:
        return SKKMeans(k, init=C0, n_init=1, algorithm=algorithm, max_iter=max_iter,
                        tol=args.tol, random_state=args.seed)

    # warm-up: numba kernels on the workers (bounds pruning in every iteration, so that its
    # kernels compile here: adaptive bounds run plain passes in the first iterations)
    with dask.config.set({"kmeans_dask.bounds-switch": float("inf")}):
        for algorithm in ("lloyd", "bounds"):
            ours(algorithm, 3).fit(X)
    for algorithm in ("lloyd", "elkan"):
        theirs(algorithm, 2).fit(Xn)

    results: list[tuple[str, float, float, int, float, str]] = []
    centres: dict[str, np.ndarray] = {}
    for algorithm in ("lloyd", "bounds"):
        wall, km = timed(lambda a=algorithm: ours(a, args.max_iter).fit(X))
        lloyd_s = sum(h.seconds for h in km.history_)
        spared = sum(h.n_skipped for h in km.history_) / (args.rows * k * km.n_iter_)
        centres[algorithm] = km.cluster_centers_
        note = f"spared {spared:.1%} of the distances" if algorithm == "bounds" else ""
        results.append((f"ours {algorithm}", wall, lloyd_s, km.n_iter_, km.inertia_, note))
        del km
        gc.collect()
    for algorithm in ("lloyd", "elkan"):
        wall, km = timed(lambda a=algorithm: theirs(a, args.max_iter).fit(Xn))
        results.append((f"sklearn {algorithm}", wall, wall, km.n_iter_, km.inertia_, ""))
        del km
        gc.collect()

    print()
    print(
        f"=== converge dtype {dtype.name}: {args.rows:,} rows x {args.features} features, "
        f"k={k}, cluster_std={args.cluster_std}, tol={args.tol}, max_iter={args.max_iter}, "
        f"one k-means++ start ==="
    )
    print(f"{'method':<15} {'fit s':>9} {'Lloyd s':>9} {'n_iter':>6} {'inertia':>17}  notes")
    for name, wall, lloyd_s, n_iter, inertia, note in results:
        print(f"{name:<15} {wall:>9.4g} {lloyd_s:>9.4g} {n_iter:>6d} {inertia:>17.10g}  {note}")
    same = np.array_equal(centres["lloyd"], centres["bounds"])
    print(f"bounds centres equal plain Lloyd's bit for bit: {same}")
    by = {r[0]: r for r in results}
    for mine in ("ours lloyd", "ours bounds"):
        for peer in ("sklearn lloyd", "sklearn elkan"):
            print(
                f"  {mine} / {peer}: Lloyd phase {ratio(by[mine][2], by[peer][2])}, "
                f"fit {ratio(by[mine][1], by[peer][1])}"
            )
    print(f"  ours bounds / ours lloyd: Lloyd phase "
          f"{ratio(by['ours bounds'][2], by['ours lloyd'][2])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("kmeans_dask").setLevel(logging.WARNING)

    # Load every library with native thread pools (BLAS, OpenMP) *before* starting the
    # cluster: the nanny writes OMP/MKL/OPENBLAS_NUM_THREADS=1 into this process's
    # os.environ before spawning workers, and a pool initialised after that would run
    # numpy/scikit-learn in the client on one thread.
    import sklearn.cluster  # noqa: F401
    import threadpoolctl  # noqa: F401
    from distributed import Client, LocalCluster, default_client

    import kmeans_dask  # noqa: F401
    from kmeans_dask import worker_settings

    skipped: list[str] = []
    for peer in list(args.peer_list):
        try:
            if peer == "dask-ml":
                import dask_ml.cluster  # noqa: F401
        except Exception as exc:
            skipped.append(f"peer {peer} skipped: import failed: {reason(exc)}")
            args.peer_list.remove(peer)

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
        assert default_client() is client
        print_machine_info(client)
        print(
            f"cluster: LocalCluster({N_WORKERS} worker processes x 1 thread); "
            "numpy and scikit-learn run in the client with its thread pools"
        )
        for line in skipped:
            print(line)
        t0 = time.perf_counter()
        for dtype in args.dtype_list:
            if args.converge:
                for k in args.k_list:
                    run_converge(client, dtype, k, args)
                    client.run(gc.collect)
                continue
            run_dtype(client, dtype, args)
            client.run(gc.collect)
        print(f"\ntotal benchmark time: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
