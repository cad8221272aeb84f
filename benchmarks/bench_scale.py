"""Scaling of the whole job with the rows, persisted and streamed (issue 11).

    python benchmarks/bench_scale.py [--rows 1000000 2000000 4000000 8000000 16000000]
                                      [--features 32] [--k 8] [--iters 20]
                                      [--stream-iters 10]

For every size it writes (once, reused when present) ``benchmarks/data/scale-{rows}x{d}-s0.5/``:
Parquet files of ~64 MiB (float32 columns, 4 row groups each, 16 overlapping blobs: centres
drawn with standard deviation :data:`CENTRE_SCALE` around unit-variance noise, so Lloyd from
random rows runs every iteration asked of it; with well separated blobs it stopped after 4 at
1M rows and the "per iteration" figure was the median of 3 gaps), then runs the job
(``kmeans_dask.job.pipeline.run``: plan, read, fit with K fixed, ``tol=0`` and ``--iters``
(persisted) or ``--stream-iters`` (streamed) Lloyd iterations from random rows, assign,
commit) on a ``LocalCluster(2 workers x 1 thread)`` twice: ``kmeans.persist: always`` and
``never``; then ``--repeat - 1`` more persisted jobs per size, in rounds over the sizes, and
the per-row figure of every persisted job, their median per size, and the fixed cost of an
iteration (a fit on 8,192 rows in 2 blocks). It prints, per run:

* seconds per Lloyd iteration (median of the iterations' own times after the first, which
  also computes the exact distances, ``(n)`` of them; each timed where the iteration runs,
  on the worker leading it or on the client; the log records of led iterations arrive in
  bursts of a batch, so their gaps no longer time an iteration) and per 1M rows;
* the job's seconds by stage;
* the peak resident memory of every worker, its idle baseline before the job (Python, Dask,
  numba, Arrow), and for the persisted run the ratio (peak - baseline) / data held per
  worker. The peak is exact and costs nothing on Linux: the kernel's high-water mark
  (``VmHWM``) of each worker process, reset through ``/proc/self/clear_refs`` before the
  job; elsewhere, or with ``--sample S``, ``psutil`` samples every S seconds (client.run
  calls that share the cores with the job);
* bytes read by the workers (``read_chars``: every byte read, page cache or not);
* the time of one streamed pass that only reads the blocks (the "read the data once" time,
  median of 3 passes), and the streamed iteration's (median) ratio to it.

Sizes run one after the other, never two at once, after an untimed warm-up run of both
modes on 200,000 rows (the first job in fresh workers pays for loading the kernels).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
FILE_BYTES = 64 * 2**20
#: the blobs' centres' standard deviation (their noise: 1): 0.5 overlaps them (scikit-learn's
#: Lloyd took 121 iterations to converge on 512k of these rows at k = 8; 4.0: 4 iterations)
CENTRE_SCALE = 0.5
#: rows of the fixed-cost fit: two blocks of the planner's smallest size, one per worker
FIXED_ROWS = 8192


def _folder(rows: int, d: int) -> Path:
    return DATA / f"scale-{rows}x{d}-s{CENTRE_SCALE}"


def _generate(folder: Path, rows: int, d: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (folder / "_COMPLETE").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_file = max(1, FILE_BYTES // (d * 4))
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=CENTRE_SCALE, size=(16, d)).astype(np.float32)
    tile = rng.normal(size=(per_file, d)).astype(np.float32)
    labels = rng.integers(0, 16, per_file)
    for i, start in enumerate(range(0, rows, per_file)):
        n = min(per_file, rows - start)
        X = tile[:n] + centres[labels[:n]] + np.float32(0.001 * i)
        table = pa.table({f"f{j:02d}": X[:, j] for j in range(d)})
        pq.write_table(
            table, folder / f"part-{i:04d}.parquet", compression="none", row_group_size=-(-n // 4)
        )
    (folder / "_COMPLETE").write_text("ok")


def _worker_stats() -> tuple[int, int]:
    import psutil

    p = psutil.Process()
    return int(p.memory_info().rss), int(p.io_counters().read_chars)


def _settle(client, timeout: float = 30.0) -> None:
    """Wait until the workers hold no data of an earlier run (its handles are released
    asynchronously: measured right after a persisted 16M job, a worker's idle "baseline" still
    held 1.3 GiB of it: the per-worker actors, fixed since), then collect garbage on them.
    Prints the keys still held if the timeout passed."""
    import gc

    deadline = time.monotonic() + timeout
    held = sum(map(len, client.has_what().values()))
    while held and time.monotonic() < deadline:
        time.sleep(0.1)
        held = sum(map(len, client.has_what().values()))
    client.run(gc.collect)
    if held:
        keys = sorted({str(k) for ks in client.has_what().values() for k in ks})
        print(
            f"  ({held} keys of an earlier run still on the workers after {timeout} s: {keys[:5]})"
        )


def _reset_peak() -> bool:
    """Reset this process's resident high-water mark (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    """This process's resident high-water mark since the last reset, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


class _Sampler:
    """Peak resident memory of every worker, sampled on the workers every 0.1 s."""

    def __init__(self, client, interval: float = 0.1) -> None:
        self.client = client
        self.interval = interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.interval > 0 and not self._stop.wait(self.interval):
            try:
                for w, (rss, _) in self.client.run(_worker_stats).items():
                    self.peak[w] = max(self.peak.get(w, 0), rss)
            except Exception:
                pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def _iteration_times():
    """The seconds of the Lloyd iterations logged inside the block (a list, filled)."""
    handler = _Iterations()
    logger = logging.getLogger("kmeans_dask.lloyd")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # iterations are DEBUG
    try:
        yield handler.times
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _Iterations(logging.Handler):
    """Each Lloyd iteration record's own seconds (``record.seconds``, one per iteration)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Lloyd iteration"):
            self.times.append(record.seconds)


def _read_once(client, folder: Path, block_bytes: str) -> float:
    """Seconds of one streamed pass that reads every block and does nothing else (the
    median of 3 passes)."""
    from kmeans_dask.engine.blocks import BlockSet
    from kmeans_dask.engine.source import BlockSource
    from kmeans_dask.io import open_dataset

    ds = open_dataset(str(folder))
    src = BlockSource.from_dataset(ds, np.float32)
    import dask

    with dask.config.set({"kmeans_dask.block-bytes": block_bytes}):
        recipes = src.recipes()
    with client.as_current():
        bs = BlockSet.from_recipes(recipes, src.n_features, src.dtype, persist=False)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            bs.map(_rows)
            times.append(time.perf_counter() - t0)
    # the median, as for the iterations it is compared with (the best of a few passes would
    # put a lucky read against a typical iteration)
    return float(np.median(times))


def _rows(block) -> int:
    return int(block.X.shape[0])


def _one(client, folder: Path, out: Path, mode: str, k: int, iters: int, interval: float) -> dict:
    from kmeans_dask.job.config import parse_config
    from kmeans_dask.job.pipeline import run

    config = parse_config(
        {
            "name": f"scale-{mode}",
            "input": {"uri": str(folder)},
            "kmeans": {
                "k": k,
                "init": "random",
                "max_iter": iters,
                "tol": 0.0,
                "dtype": "float32",
                "persist": mode,
            },
            "output": {"uri": str(out / mode)},
        }
    )
    _settle(client)
    base = client.run(_worker_stats)
    exact = interval <= 0 and all(client.run(_reset_peak).values())
    with (
        _iteration_times() as times,
        _Sampler(client, 0 if exact else interval or 0.1) as sampler,
    ):
        t0 = time.perf_counter()
        result = run(config, client=client)
        total = time.perf_counter() - t0
    after = client.run(_worker_stats)
    manifest = json.loads((Path(result.results_uri) / "manifest.json").read_text())
    later = times[1:]
    return {
        "total": total,
        "timings": result.timings,
        "iter": float(np.median(later)) if later else float("nan"),
        "n_gaps": len(later),
        "baseline": {w: base[w][0] for w in base},
        "peak": client.run(_peak) if exact else dict(sampler.peak),
        "peak_how": "high-water mark" if exact else f"sampled every {interval or 0.1} s",
        "read_bytes": sum(after[w][1] - base[w][1] for w in after),
        "memory": manifest["memory"],
    }


def _warm_up(client, d: int, k: int) -> None:
    """One untimed run of both modes on 200,000 rows: the first job in fresh worker
    processes loads the numba kernels, Arrow and the allocator's pools (measured: the first
    size's iteration took 0.044 s per 1M rows, 0.024 s when run again)."""
    folder = _folder(200_000, d)
    _generate(folder, 200_000, d)
    for mode in ("always", "never"):
        out = Path(tempfile.mkdtemp(prefix="bench-scale-warmup-"))
        try:
            _one(client, folder, out, mode, k, 3, 0.0)
        finally:
            shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[1_000_000, 2_000_000, 4_000_000, 8_000_000, 16_000_000],
    )
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--iters", type=int, default=20, help="Lloyd iterations, persisted runs")
    p.add_argument("--stream-iters", type=int, default=10, help="Lloyd iterations, streamed runs")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="persisted jobs per size, in rounds over the sizes (the per-row figure is their "
        "median: the sizes run minutes apart on a shared machine)",
    )
    p.add_argument(
        "--sample",
        type=float,
        default=0.0,
        help="seconds between psutil samples of the workers' memory (0, the default: the "
        "exact high-water mark where the OS keeps one, Linux; samples are client.run calls "
        "that share the cores with the job)",
    )
    args = p.parse_args()

    from distributed import Client, LocalCluster

    from kmeans_dask import worker_settings

    print(
        f"features {args.features} float32, k {args.k}, {args.iters} (persisted) / "
        f"{args.stream_iters} (streamed) Lloyd iterations, "
        "LocalCluster(2 workers x 1 thread); peak memory: "
        + (
            "high-water mark (exact, where the OS has one)"
            if args.sample <= 0
            else f"sampled every {args.sample} s"
        )
    )
    header = (
        f"{'rows':>10} {'mode':>8} {'s/iter':>7} {'(n)':>4} {'s/iter/1M':>9} {'job s':>6} "
        f"{'read':>5} {'fit':>6} {'assign':>6} {'peak MiB':>15} {'base MiB':>9} "
        f"{'(peak-base)/held':>16} {'GB read':>8} {'read-once s':>11} {'iter/read':>9}"
    )
    print(header)
    with (
        worker_settings(),
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        _warm_up(client, args.features, args.k)
        per_row: dict[int, list[float]] = {rows: [] for rows in args.rows}
        for rows in args.rows:
            folder = _folder(rows, args.features)
            _generate(folder, rows, args.features)
            read_once = _read_once(client, folder, "256MiB")
            held = rows * args.features * 4 / 2  # per worker, persisted
            for mode in ("always", "never"):
                out = Path(tempfile.mkdtemp(prefix="bench-scale-"))
                try:
                    iters = args.iters if mode == "always" else args.stream_iters
                    r = _one(client, folder, out, mode, args.k, iters, args.sample)
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                t = r["timings"]
                peaks = [r["peak"].get(w, 0) for w in sorted(r["baseline"])]
                bases = [r["baseline"][w] for w in sorted(r["baseline"])]
                ratio = max((pk - b) / held for pk, b in zip(peaks, bases, strict=True))
                ratio = ratio if mode == "always" else float("nan")
                if mode == "always":
                    per_row[rows].append(r["iter"] / rows * 1e6)
                print(
                    f"{rows:>10} {r['memory']['mode']:>8} {r['iter']:>7.3f} {r['n_gaps']:>4} "
                    f"{r['iter'] / rows * 1e6:>9.4f} {r['total']:>6.1f} {t.get('read', 0):>5.1f} "
                    f"{t.get('fit', 0):>6.1f} {t.get('assign', 0):>6.1f} "
                    f"{'/'.join(str(pk // 2**20) for pk in peaks):>15} "
                    f"{max(bases) // 2**20:>9} {ratio:>16.2f} "
                    f"{r['read_bytes'] / 1e9:>8.2f} {read_once:>11.2f} "
                    f"{r['iter'] / read_once:>9.2f}",
                    flush=True,
                )
        for _ in range(args.repeat - 1):
            for rows in args.rows:
                out = Path(tempfile.mkdtemp(prefix="bench-scale-"))
                try:
                    r = _one(
                        client,
                        _folder(rows, args.features),
                        out,
                        "always",
                        args.k,
                        args.iters,
                        args.sample,
                    )
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                per_row[rows].append(r["iter"] / rows * 1e6)
        fixed, n_fixed = _fixed_cost(client, args.features, args.k)
        _summary(per_row, fixed, n_fixed)


def _fixed_cost(client, d: int, k: int) -> tuple[float, int]:
    """Seconds of a persisted Lloyd iteration that does (almost) no work: 2 blocks of 4,096
    rows (the planner's smallest; 2 chunks of 2,000 rows became one block on one worker),
    one per worker, through the same per-worker calls (the median iteration after the
    first, and how many)."""
    import dask.array as da

    from kmeans_dask import KMeans

    X = np.random.default_rng(0).uniform(size=(FIXED_ROWS, d)).astype(np.float32)
    with _iteration_times() as times, client.as_current():
        KMeans(k, init="random", max_iter=60, tol=0, random_state=0).fit(
            da.from_array(X, chunks=(FIXED_ROWS // 2, d))
        )
    later = times[1:]
    return float(np.median(later)), len(later)


def _summary(per_row: dict[int, list[float]], fixed: float, n_fixed: int) -> None:
    """The persisted per-row figure of every job and size, their medians, and the medians'
    spread (the goal: within 15%)."""
    print(
        f"\npersisted s/iter per 1M rows, every job (rounds over the sizes); fixed cost of an "
        f"iteration ({FIXED_ROWS:,} rows in 2 blocks): {fixed * 1e3:.1f} ms "
        f"(median of {n_fixed} iterations)"
    )
    print(f"{'rows':>10} {'jobs':>24} {'median':>8} {'net of fixed':>12}")
    medians = {}
    for rows, values in per_row.items():
        medians[rows] = float(np.median(values))
        net = medians[rows] - fixed / rows * 1e6
        jobs = " ".join(f"{v:.4f}" for v in values)
        print(f"{rows:>10} {jobs:>24} {medians[rows]:>8.4f} {net:>12.4f}")
    lo, hi = min(medians.values()), max(medians.values())
    print(f"largest / smallest median: {hi / lo:.2f} (goal <= 1.15)")


if __name__ == "__main__":
    main()
