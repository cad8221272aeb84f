"""The whole segmentation job, run as a user runs it, against a scikit-learn + pyarrow script.

    python benchmarks/bench_job.py [--rows 4000000] [--files 16] [--ks 2..10]
                                   [--queries 10000] [--skip-sklearn] [--keep-data]
                                   [--set kmeans.block_bytes=240MiB ...] [--no-warmup]
    python benchmarks/bench_job.py --prepare-only 256MiB     # the read stage, piece by piece
    python benchmarks/bench_job.py --rows 200000 --files 4    # quick check

Data (not timed): ``--rows`` x 32 float64 features (``f00``..``f31``) and an int64 ``id``
column in ``--files`` Parquet files (uncompressed, one row group each), seeded overlapping
blobs from :func:`kmeans_dask.synthetic.make_blobs` (8 centres, ``cluster_std=8``: the two
nearest centres are ~5 standard deviations apart), and ``--queries`` new rows from the same
blobs in one more file. It is written to ``benchmarks/data/job-{rows}x32-{files}f-{queries}q/``
(git-ignored), reused when present, and removed at the end unless ``--keep-data``.

In one run, one step at a time:

1. read once: ``pyarrow.parquet.read_table`` of the input folder and one Fortran-order
   numpy matrix of the 32 features filled column by column (best of 3; in this process).
2. our job: a config YAML (K = ``--ks`` swept, picked by silhouette, KNN scoring of the
   query rows against the segments enabled, everything else the config defaults) run with
   ``kmeans_dask.cli.main(["run", CONFIG, "--no-prefect"])`` in this process, as
   ``kmeans-dask run CONFIG --no-prefect`` runs it: its own embedded ``LocalCluster(2 worker
   processes x 1 thread)``, local storage, output committed. Timed: the whole call (cluster
   start and stop included) and the job's own stage timings (``manifest.json`` ``timings``).
   An untimed run of the same command on a tiny data set first compiles the numba kernels
   into their on-disk cache, as any earlier run would have.
3. scikit-learn (unless ``--skip-sklearn``), in this process with 2 BLAS/OpenMP threads
   (the thread variables the job's ``LocalCluster`` set to 1 are restored, and
   ``threadpoolctl`` pins 2): the same work the way a careful user would write it, with the
   job's resolved config values (see ``_sklearn``).

``--prepare-only BLOCK_BYTES`` runs only step 1 and then the job's read stage on a fresh
``LocalCluster(2 x 1)`` twice, and its pieces one at a time (see ``_prepare_breakdown``).

Then it checks that both chose the same K and prints the adjusted Rand index of the two
labellings of every row (and of each against the generating blobs), and of the KNN labels.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Load every library with a native thread pool before the job's LocalCluster starts: its
# nanny writes OMP/MKL/OPENBLAS_NUM_THREADS=1 into this process's environment.
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if __name__ != "__mp_main__":
    # Not in the job's workers: a spawned worker process re-imports the script that started
    # it (as ``__mp_main__``), and these imports cost each worker ~1.5 s more to start and
    # ~0.4 s more to stop, which `kmeans-dask run`'s workers (whose script imports only the
    # CLI) do not pay.
    import sklearn.cluster
    import sklearn.metrics
    import sklearn.neighbors
    import sklearn.preprocessing
    import threadpoolctl

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
FEATURES = [f"f{j:02d}" for j in range(32)]
DATA = Path(__file__).parent / "data"
CENTRES, STD, SEED = 8, 8.0, 0


# ---------------------------------------------------------------------------- data
def _generate(folder: Path, rows: int, files: int, queries: int) -> None:
    """Input files, query file and the generating labels (``truth.npz``), once."""
    import dask

    from kmeans_dask.synthetic import make_blobs

    if (folder / "_COMPLETE").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "input").mkdir(parents=True)
    (folder / "queries").mkdir()
    per = -(-rows // files)
    X, y, centres = make_blobs(
        rows, len(FEATURES), CENTRES, cluster_std=STD, chunk_rows=per, random_state=SEED
    )
    truth, start = [], 0
    for i in range(X.numblocks[0]):
        Xi, yi = dask.compute(X.blocks[i], y.blocks[i], scheduler="synchronous")
        cols = {"id": np.arange(start, start + len(Xi), dtype=np.int64)}
        cols.update({name: Xi[:, j] for j, name in enumerate(FEATURES)})
        pq.write_table(
            pa.table(cols), folder / "input" / f"part-{i:03d}.parquet", compression="none"
        )
        truth.append(yi.astype(np.int8))
        start += len(Xi)
    rng = np.random.default_rng([SEED, 1 << 20])  # a stream make_blobs never uses
    yq = rng.integers(0, CENTRES, queries)
    Xq = centres[yq] + rng.normal(scale=STD, size=(queries, len(FEATURES)))
    cols = {"id": np.arange(rows, rows + queries, dtype=np.int64)}
    cols.update({name: Xq[:, j] for j, name in enumerate(FEATURES)})
    pq.write_table(pa.table(cols), folder / "queries" / "part-000.parquet", compression="none")
    np.savez(folder / "truth.npz", rows=np.concatenate(truth), queries=yq.astype(np.int8))
    (folder / "_COMPLETE").write_text("ok")


def _matrix(table: pa.Table, order: str, tile: int = 8192) -> np.ndarray:
    """The features of ``table`` as one (n x d) float64 matrix, one copy of every value:
    'F' copies column by column; 'C' fills ``tile`` rows at a time (a tile stays in cache
    while its 32 columns are written, as kmeans_dask's own reader does; column by column
    into a C matrix measured 1.5-1.7 s against 0.85-0.95 s here at 4M x 32)."""
    X = np.empty((table.num_rows, len(FEATURES)), dtype=np.float64, order=order)
    off = 0
    for batch in table.select(FEATURES).to_batches():
        cols = [batch.column(j).to_numpy() for j in range(len(FEATURES))]
        step = len(batch) if order == "F" else tile
        for s in range(0, len(batch), step):
            block = X[off + s : off + min(len(batch), s + step)]
            for j, col in enumerate(cols):
                block[:, j] = col[s : s + step]
        off += len(batch)
    return X


def _read_once(folder: Path, repeat: int = 3) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        X = _matrix(pq.read_table(folder / "input", columns=FEATURES), "F")
        times.append(time.perf_counter() - t0)
        del X
    return times


# ---------------------------------------------------------------------------- our job
def _write_config(path: Path, data: Path, out: Path, ks: tuple[int, int], name: str) -> None:
    import yaml

    config = {
        "name": name,
        "input": {
            "uri": str(data / "input"),
            "format": "parquet",
            "id_column": "id",
            "columns": FEATURES,
        },
        "scaling": "standard",
        "kmeans": {"k": "auto", "k_min": ks[0], "k_max": ks[1], "select": "silhouette"},
        "knn": {
            "enabled": True,
            "query": {"uri": str(data / "queries"), "format": "parquet", "id_column": "id"},
        },
        "output": {"uri": str(out)},
        "cluster": {"n_workers": 2, "threads_per_worker": 1},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


class _Trace(logging.Handler):
    """The job's stage records (``stage NAME done in S s``: its own timings; the manifest's
    ``timings`` lack ``commit``, which writes the manifest) and the DEBUG records of the
    sweep (k-means|| rounds, Lloyd iterations, per-K results), with their times."""

    LOGGERS = (
        "kmeans_dask.job.pipeline",
        "kmeans_dask.lloyd",
        "kmeans_dask.engine.init",
        "kmeans_dask.sweep",
    )

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.timings: dict[str, float] = {}
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.perf_counter(), record.getMessage()))
        if record.msg == "stage %s done in %.2f s":
            name, seconds = record.args
            self.timings[name] = float(seconds)

    def sweep_phases(self) -> dict[str, float]:
        """When the sweep's k-means|| pool, Lloyd iterations and metrics happened."""
        start = next(t for t, m in self.records if m == "stage sweep ...")
        end = next(t for t, m in self.records if m.startswith("stage sweep done"))
        rounds = [t for t, m in self.records if m.startswith("k-means|| round")]
        lloyd = [t for t, m in self.records if m.startswith("Lloyd iteration") and t < end]
        return {
            "pool": (rounds[-1] if rounds else start) - start,
            "first_lloyd": lloyd[0] - start,
            "last_lloyd": lloyd[-1] - start,
            "total": end - start,
            "lloyd_records": len(lloyd),
        }


def _run_cli(config: Path, overrides: list[str]) -> tuple[float, _Trace]:
    from kmeans_dask.cli import main as cli_main

    env = {k: os.environ.get(k) for k in THREAD_ENV}
    handler = _Trace()
    logs = [logging.getLogger(name) for name in handler.LOGGERS]
    for log in logs:  # DEBUG records reach this handler; the CLI's own handler shows INFO
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)
    t0 = time.perf_counter()
    try:
        code = cli_main(["run", str(config), "--no-prefect", *(f"--set={o}" for o in overrides)])
    finally:
        wall = time.perf_counter() - t0
        for log in logs:
            log.removeHandler(handler)
            log.setLevel(logging.NOTSET)
        for key, value in env.items():  # give scikit-learn its threads back
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if code != 0:
        raise SystemExit(f"kmeans-dask run {config} --no-prefect exited {code}")
    return wall, handler


def _job(
    data: Path, work: Path, ks: tuple[int, int], overrides: list[str], warmup: bool = True
) -> dict:
    """Warm-up on tiny data (untimed), then the timed job; its timings, sweep and labels."""
    import pandas as pd

    from kmeans_dask.io import read_manifest
    from kmeans_dask.job.config import load_config, parse_overrides

    if warmup:
        warm = work / "warmup-data"
        _generate(warm, 20_000, 2, 200)
        _write_config(work / "warmup.yaml", warm, work / "warmup-results", ks, "bench-warmup")
        print("\n--- untimed warm-up run (20,000 rows: numba kernels into their disk cache) ---")
        _run_cli(work / "warmup.yaml", overrides)

    cfg = work / "job.yaml"
    _write_config(cfg, data, work / "results", ks, "bench-job")
    sets = "".join(f" --set {o}" for o in overrides)
    print(f"\n--- our job: kmeans-dask run {cfg} --no-prefect{sets} (in-process) ---")
    print(cfg.read_text())
    wall, trace = _run_cli(cfg, overrides)
    timings = trace.timings
    manifest = read_manifest(str(work / "results"))
    for name, sec in manifest["timings"].items():  # the same figures, rounded to 1 ms
        assert abs(timings[name] - sec) < 2e-3, (name, timings[name], sec)
    (attempt,) = glob.glob(str(work / "results" / "*" / "attempt-*" / "manifest.json"))
    folder = Path(attempt).parent
    assigned = pd.read_parquet(folder / "assignments", columns=["id", "segment"])
    scores = pd.read_parquet(folder / "scores")
    return {
        "wall": wall,
        "config": load_config(str(cfg), parse_overrides(overrides)),
        "timings": timings,
        "phases": trace.sweep_phases(),
        "k": manifest["k"],
        "memory": manifest.get("memory", {}),
        "sweep": pd.read_parquet(folder / "sweep.parquet"),
        "labels": assigned.sort_values("id").segment.to_numpy(),
        "knn": scores.sort_values("id").knn_label.to_numpy(),
    }


def _prepare_breakdown(data: Path, block_bytes: str) -> None:
    """``--prepare-only``: the read stage's pieces on a fresh ``LocalCluster(2 x 1)``, each
    waited for: the whole stage (``read_and_scale``, as the job calls it) twice, then its
    steps one at a time (load the blocks, summarise them, scale them in place), with the
    tasks' own compute seconds from the task stream and the rows each worker holds."""
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster, get_task_stream, wait

    from kmeans_dask import worker_settings
    from kmeans_dask.engine.block import load, scale_in_place, summarize
    from kmeans_dask.engine.source import Affine, BlockSource
    from kmeans_dask.io import open_dataset
    from kmeans_dask.job.config import parse_config
    from kmeans_dask.job.prepare import read_and_scale

    env = {k: os.environ.get(k) for k in THREAD_ENV}
    config = parse_config(
        {
            "name": "bench-prepare",
            "input": {"uri": str(data / "input"), "id_column": "id", "columns": FEATURES},
            "kmeans": {"block_bytes": block_bytes},
            "output": {"uri": str(data.parent / "unused-output")},
        }
    )
    with (
        worker_settings(),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        for _ in range(2):
            t0 = time.perf_counter()
            prepared = read_and_scale(config, client)
            wait(prepared.blocks.handles)
            print(
                f"read_and_scale (the job's read stage), waited: {time.perf_counter() - t0:.2f} s",
                flush=True,
            )
            prepared.release()
        ds = open_dataset(str(data / "input"), "parquet", FEATURES, "id")
        src = BlockSource.from_dataset(ds, np.float64, parse_bytes(block_bytes))
        recipes = src.recipes(parse_bytes(block_bytes))
        print(f"blocks: {[r.n_rows for r in recipes]} rows")
        with get_task_stream(client) as ts:
            t0 = time.perf_counter()
            blocks = client.map(load, recipes, pure=False)
            wait(blocks)
            t1 = time.perf_counter()
            sums = client.gather(client.map(summarize, blocks, pure=False))
            t2 = time.perf_counter()
            n = sum(x.n for x in sums)
            mean = sum(x.mean * x.n for x in sums) / n
            scaled = client.map(
                scale_in_place, blocks, transform=Affine(mean, np.ones_like(mean)), pure=False
            )
            wait(scaled)
            t3 = time.perf_counter()
        where = client.who_has(blocks)
        rows = {}
        for f, r in zip(blocks, recipes, strict=True):
            for w in where[f.key]:
                rows[w] = rows.get(w, 0) + r.n_rows
        print(
            f"load (read + fill blocks) {t1 - t0:.2f} s, summarise {t2 - t1:.2f} s, "
            f"scale in place {t3 - t2:.2f} s; rows per worker {sorted(rows.values())}"
        )
        busy: dict[str, float] = {}
        for task in ts.data:
            name = str(task["key"]).split("-")[0]
            for ss in task["startstops"]:
                if ss["action"] == "compute":
                    busy[name] = busy.get(name, 0.0) + ss["stop"] - ss["start"]
        print(
            "task compute seconds (sum over tasks): "
            + ", ".join(f"{k} {v:.2f}" for k, v in busy.items())
        )
        client.cancel(blocks + scaled)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# ---------------------------------------------------------------------------- scikit-learn
def _distances(X: np.ndarray, C: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.empty(len(X))
    step = 1 << 18
    for s in range(0, len(X), step):
        diff = X[s : s + step] - C[labels[s : s + step]]
        out[s : s + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def _sweep_sklearn(Xs: np.ndarray, ks: range, cfg, rows: list) -> tuple[int, dict]:
    """KMeans for every K (k-means++, the job's n_init/max_iter/tol/seed) and the silhouette
    of a ``silhouette_sample_size`` random sample (the same rows for every K)."""
    km_cfg = cfg.kmeans
    sample = cfg.metrics.silhouette_sample_size
    models, sil = {}, {}
    for k in ks:
        t0 = time.perf_counter()
        km = sklearn.cluster.KMeans(
            k,
            init="k-means++",
            n_init=km_cfg.n_init,
            max_iter=km_cfg.max_iter,
            tol=km_cfg.tol,
            random_state=km_cfg.random_state,
            algorithm="lloyd",
        ).fit(Xs)
        t1 = time.perf_counter()
        sil[k] = sklearn.metrics.silhouette_score(
            Xs, km.labels_, sample_size=min(sample, len(Xs)), random_state=km_cfg.random_state
        )
        t2 = time.perf_counter()
        models[k] = km
        rows.append((k, km.n_iter_, km.inertia_, sil[k], t1 - t0, t2 - t1))
    best = max(ks, key=lambda k: (sil[k], -k))  # highest silhouette, ties to the smaller K
    return best, models


def _vote(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros((labels.shape[0], k), dtype=np.int64)
    rows = np.arange(labels.shape[0])
    for j in range(labels.shape[1]):
        np.add.at(counts, (rows, labels[:, j]), 1)
    winner = counts.argmax(axis=1)  # ties: the smallest label (scikit-learn's mode)
    return winner, counts[rows, winner] / labels.shape[1]


def _sklearn(data: Path, work: Path, ks: tuple[int, int], cfg) -> dict:
    """The same work with pyarrow, numpy and scikit-learn in one process."""
    out = work / "sklearn"
    (out / "assignments").mkdir(parents=True)
    (out / "scores").mkdir()
    t, table_rows = {}, []
    t0 = time.perf_counter()
    table = pq.read_table(data / "input", columns=["id", *FEATURES])
    X = _matrix(table, "C")  # C order: what KMeans works on (F would be copied every fit)
    ids = table.column("id").to_numpy()
    del table
    t["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scaler = sklearn.preprocessing.StandardScaler(copy=False)
    Xs = scaler.fit_transform(X)  # in place: X is not needed unscaled
    t["scale"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    k, models = _sweep_sklearn(Xs, range(ks[0], ks[1] + 1), cfg, table_rows)
    t["sweep"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    km = models[k]
    labels = km.predict(Xs)
    dist = _distances(Xs, km.cluster_centers_, labels)
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in sorted((data / "input").iterdir())]
    off = 0
    for i, n in enumerate(sizes):  # one file per input file, as the job writes
        part = pa.table(
            {
                "id": ids[off : off + n],
                "segment": labels[off : off + n],
                "distance_to_centroid": dist[off : off + n],
            }
        )
        pq.write_table(part, out / "assignments" / f"part-{i:05d}.parquet")
        off += n
    t["assign"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    qt = pq.read_table(data / "queries", columns=["id", *FEATURES])
    Xq = scaler.transform(_matrix(qt, "C"))
    knn = sklearn.neighbors.KNeighborsClassifier(
        n_neighbors=cfg.knn.n_neighbors, weights=cfg.knn.weights, algorithm="brute"
    ).fit(Xs, labels)
    kdist, ind = knn.kneighbors(Xq)
    knn_label, share = _vote(labels[ind], k)
    scores = pa.table(
        {
            "id": qt.column("id"),
            "knn_label": knn_label,
            "vote_share": share,
            "kth_distance": kdist[:, -1],
            "mean_distance": kdist.mean(axis=1),
            "nearest_centroid": km.predict(Xq),
        }
    )
    pq.write_table(scores, out / "scores" / "part-00000.parquet")
    t["score"] = time.perf_counter() - t0
    order = np.argsort(ids, kind="stable")
    return {
        "timings": t,
        "k": k,
        "table": table_rows,
        "labels": labels[order],
        "knn": knn_label,
        "labels_by_k": {kk: m.labels_[order] for kk, m in models.items()},
        "precomputed": _precomputed_silhouettes(Xs, models, cfg, table_rows),
    }


def _precomputed_silhouettes(
    Xs: np.ndarray, models: dict, cfg, table_rows: list
) -> tuple[float, float]:
    """Not part of the script's time: the silhouettes of every K from one distance matrix
    of the same sample (``metric='precomputed'``), the way a user could share the sample's
    distances between K as our job does. Returns (seconds, largest difference)."""
    size = min(cfg.metrics.silhouette_sample_size, len(Xs))
    t0 = time.perf_counter()
    idx = np.random.RandomState(cfg.kmeans.random_state).permutation(len(Xs))[:size]
    D = sklearn.metrics.pairwise_distances(Xs[idx])
    diff = 0.0
    for k, km in models.items():
        value = sklearn.metrics.silhouette_score(D, km.labels_[idx], metric="precomputed")
        diff = max(diff, abs(value - next(r[3] for r in table_rows if r[0] == k)))
    return time.perf_counter() - t0, diff


# ---------------------------------------------------------------------------- report
def _machine() -> None:
    import dask
    import distributed
    import numba
    import pandas

    import kmeans_dask

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    print(
        f"machine: {platform.platform()}; {cpu}; cpus {os.cpu_count()}, usable "
        f"{len(os.sched_getaffinity(0))}; load average {os.getloadavg()}"
    )
    print(
        f"versions: python {platform.python_version()}, numpy {np.__version__}, pandas "
        f"{pandas.__version__}, pyarrow {pa.__version__}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}, scikit-learn {sklearn.__version__}, "
        f"numba {numba.__version__}, kmeans_dask {kmeans_dask.__version__}"
    )
    env = {k: os.environ.get(k) for k in (*THREAD_ENV, "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"thread env: {env}")


def _pools(label: str) -> None:
    print(
        f"{label} thread pools: "
        + "; ".join(
            f"{i['internal_api']} {i.get('version')} x{i['num_threads']}"
            for i in threadpoolctl.threadpool_info()
        )
    )


def _report(args, read_once: float, job: dict, sk: dict | None) -> None:
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score as ari

    t = job["timings"]
    stages = sum(t.values())
    print(
        f"\n=== {args.rows:,} x 32 float64 in {args.files} files, K = {args.ks}, "
        f"{args.queries:,} queries ==="
    )
    print(f"read once (pyarrow read_table + Fortran-order matrix, best of 3): {read_once:.2f} s")
    print(f"our job: memory plan {job['memory'].get('mode')}; chose K={job['k']}")
    print("our job's sweep (concurrent fits; seconds overlap):")
    print(job["sweep"].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if sk is not None:
        print(f"scikit-learn chose K={sk['k']}")
        print(
            pd.DataFrame(
                sk["table"],
                columns=["k", "n_iter", "inertia", "silhouette_20k", "fit_s", "silhouette_s"],
            ).to_string(index=False, float_format=lambda v: f"{v:.4g}")
        )
    print("\nstage                 our job s   / read once")
    for name, sec in t.items():
        print(f"  {name:<18} {sec:>10.2f}   {sec / read_once:>8.2f}x")
    print(f"  {'(sum of stages)':<18} {stages:>10.2f}")
    print(
        f"  {'(outside stages)':<18} {job['wall'] - stages:>10.2f}   cluster start/stop, "
        "config, logging"
    )
    print(f"  {'whole job (CLI)':<18} {job['wall']:>10.2f}")
    for name in ("read", "sweep", "assign"):
        print(f"goal {name} / read once <= 5x: {t[name] / read_once:.2f}x")
    ph = job["phases"]
    print(
        f"sweep timeline (s from its start): k-means|| pool rounds done {ph['pool']:.1f}, "
        f"Lloyd iterations {ph['first_lloyd']:.1f}..{ph['last_lloyd']:.1f} "
        f"({ph['lloyd_records']} iterations of all K, "
        f"{(ph['last_lloyd'] - ph['first_lloyd']) / max(1, ph['lloyd_records']):.3f} s each "
        f"on average, fits running concurrently), end {ph['total']:.1f}"
    )
    pairs = args.rows * args.queries
    print(
        f"score: {pairs:.3g} query-reference distances, "
        f"{t['score'] / pairs * 2e9:.2f} ns per distance per core (2 cores)"
    )
    if sk is None:
        return
    s = sk["timings"]
    total = sum(s.values())
    print("\nstage                 scikit-learn s")
    for name, sec in s.items():
        print(f"  {name:<18} {sec:>10.2f}")
    print(f"  {'total':<18} {total:>10.2f}")
    table = np.array([r[1:] for r in sk["table"]], dtype=float)
    pre_s, pre_diff = sk["precomputed"]
    print(
        f"scikit-learn sweep: fits {table[:, 3].sum():.2f} s ({int(table[:, 0].sum())} Lloyd "
        f"iterations; ours {int(job['sweep'].n_iter.sum())}), silhouettes "
        f"{table[:, 4].sum():.2f} s; the same silhouettes from one precomputed "
        f"distance matrix of the sample (not in the total): {pre_s:.2f} s "
        f"(largest difference {pre_diff:.1e})"
    )
    extra = sum(t.get(n, 0.0) for n in ("continuity", "profiles", "model", "drift"))
    print(
        f"our stages the script has no counterpart for (continuity, profiles, model with "
        f"plots, drift): {extra:.2f} s"
    )
    prep = t["read"] / (s["read"] + s["scale"])
    print(
        f"matching stages, ours / scikit-learn: read+scale {prep:.2f}x, "
        f"sweep {t['sweep'] / s['sweep']:.2f}x, assign {t['assign'] / s['assign']:.2f}x, "
        f"score {t['score'] / s['score']:.2f}x"
    )
    print(
        f"whole job / scikit-learn script: {job['wall'] / total:.2f}x (goal <= 0.25x); "
        f"sum of stages / script: {stages / total:.2f}x; without the stages it has no "
        f"counterpart for: {(job['wall'] - extra) / total:.2f}x"
    )
    truth = np.load(Path(args.data_folder) / "truth.npz")
    same = "same" if job["k"] == sk["k"] else "DIFFERENT"
    print(f"K: ours {job['k']}, scikit-learn {sk['k']} ({same})")
    print(
        f"adjusted Rand index, labels of all {args.rows:,} rows: ours vs scikit-learn "
        f"{ari(job['labels'], sk['labels']):.6f}; ours vs blobs "
        f"{ari(truth['rows'], job['labels']):.6f}; scikit-learn vs blobs "
        f"{ari(truth['rows'], sk['labels']):.6f}"
    )
    if job["k"] != sk["k"] and job["k"] in sk["labels_by_k"]:
        print(
            f"adjusted Rand index, ours vs scikit-learn's fit at our K={job['k']}: "
            f"{ari(job['labels'], sk['labels_by_k'][job['k']]):.6f}"
        )
    print(
        f"adjusted Rand index, KNN labels of the {args.queries:,} queries: ours vs "
        f"scikit-learn {ari(job['knn'], sk['knn']):.6f}"
    )


def _ks(text: str) -> tuple[int, int]:
    lo, _, hi = text.replace("-", "..").partition("..")
    return int(lo), int(hi or lo)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--files", type=int, default=16)
    p.add_argument("--ks", default="2..10", help="K range swept, e.g. 2..10")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--keep-data", action="store_true", help="keep the generated data for reuse")
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed warm-up run (numba's disk cache must be filled already)",
    )
    p.add_argument(
        "--prepare-only",
        metavar="BLOCK_BYTES",
        default=None,
        help="only the read-once time and the read stage's pieces at this block size",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to `kmeans-dask run --set` (e.g. kmeans.block_bytes=240MiB); "
        "scikit-learn takes the resolved values it mirrors",
    )
    args = p.parse_args()
    ks = _ks(args.ks)
    _machine()
    _pools("client (before the cluster)")
    folder = DATA / f"job-{args.rows}x32-{args.files}f-{args.queries}q"
    args.data_folder = str(folder)
    t0 = time.perf_counter()
    _generate(folder, args.rows, args.files, args.queries)
    print(f"data: {folder} ({time.perf_counter() - t0:.1f} s to generate or find; not timed)")
    work = Path(tempfile.mkdtemp(prefix="bench-job-"))
    try:
        read_times = _read_once(folder)
        print(f"read once: {', '.join(f'{x:.2f}' for x in read_times)} s")
        read_once = min(read_times)
        if args.prepare_only:
            _prepare_breakdown(folder, args.prepare_only)
            return 0
        job = _job(folder, work, ks, args.overrides, not args.no_warmup)
        sk = None
        if not args.skip_sklearn:
            cores = len(os.sched_getaffinity(0))
            with threadpoolctl.threadpool_limits(limits=cores):
                _pools("client (scikit-learn)")
                print("\n--- scikit-learn + pyarrow script ---", flush=True)
                sk = _sklearn(folder, work, ks, job["config"])
        _report(args, read_once, job, sk)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_data:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
