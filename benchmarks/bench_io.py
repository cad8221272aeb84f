"""Read a partitioned Parquet dataset into a persisted dask array, against pyarrow.

    python benchmarks/bench_io.py [--rows 8000000] [--features 32] [--files 32]

Writes (once, reused when present) ``benchmarks/data/io-{rows}x{features}-{files}/`` as a
Hive-partitioned dataset (``part=NN/`` folders, one file each, float64 columns, ~2 GB at the
default size). Then, in one run on this machine, it times:

* pyarrow: ``pyarrow.parquet.read_table`` of the whole folder in this process (pyarrow's
  own thread pool), and the same followed by conversion to one (n x d) numpy matrix;
* kmeans_dask: ``open_dataset`` (listing + footers) then the dask array of the features
  persisted on a ``LocalCluster(2 workers x 1 thread)``, i.e. every row read, converted and
  held in worker memory.

Every timed read is run three times (the files are in the page cache after the first) and
the best is reported, with the ratio kmeans_dask / pyarrow.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _generate(folder: Path, rows: int, features: int, files: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if folder.exists() and (folder / "_COMPLETE").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    names = [f"f{j:02d}" for j in range(features)]
    per = -(-rows // files)
    for i in range(files):
        n = min(per, rows - i * per)
        if n <= 0:
            break
        rng = np.random.default_rng([seed, i])
        data = rng.normal(size=(n, features))
        table = pa.table({name: data[:, j] for j, name in enumerate(names)})
        out = folder / f"part={i:03d}"
        out.mkdir(parents=True)
        pq.write_table(table, out / "data.parquet", row_group_size=128 * 1024)
    (folder / "_COMPLETE").write_text("ok")


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8_000_000)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--files", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(Path(__file__).parent / "data"))
    args = p.parse_args()

    import pyarrow
    import pyarrow.parquet as pq
    from distributed import Client, LocalCluster, wait

    import kmeans_dask
    from kmeans_dask import worker_settings
    from kmeans_dask.io import open_dataset

    folder = Path(args.data) / f"io-{args.rows}x{args.features}-{args.files}"
    t0 = time.perf_counter()
    _generate(folder, args.rows, args.features, args.files, args.seed)
    size = sum(f.stat().st_size for f in folder.rglob("*.parquet"))
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.platform()}; cpus={os.cpu_count()}; pyarrow {pyarrow.__version__}, "
        f"kmeans_dask {kmeans_dask.__version__}"
    )
    print(
        f"dataset: {folder} ({args.files} files, {args.rows:,} rows x {args.features} float64, "
        f"{size / 2**30:.2f} GiB on disk; ready in {time.perf_counter() - t0:.1f} s)"
    )
    features = [f"f{j:02d}" for j in range(args.features)]

    # ---- pyarrow in this process (its own thread pool)
    t_pa, table = _best(lambda: pq.read_table(folder, columns=features))
    assert table.num_rows == args.rows
    del table

    def _to_matrix():
        t = pq.read_table(folder, columns=features)
        out = np.empty((t.num_rows, len(features)))
        for j, name in enumerate(features):
            out[:, j] = t.column(name).to_numpy()
        return out

    t_pa_np, mat = _best(_to_matrix)
    del mat

    # ---- kmeans_dask on the cluster
    with (
        worker_settings(),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):

        def _ours():
            ds = open_dataset(str(folder), "parquet", columns=features)
            X = ds.to_dask_array().persist()
            wait(X)
            n = X.shape[0]
            client.cancel(X)
            return ds, n

        _ours()  # warm-up: imports and numba-free worker start-up
        t_open, ds = _best(lambda: open_dataset(str(folder), "parquet", columns=features))
        t_ours, (ds, n) = _best(_ours)
        assert n == args.rows, n

    print(f"\n{'method':<46}{'seconds':>10}{'GiB/s':>8}")
    rows = [
        ("pyarrow read_table (threads, one process)", t_pa),
        ("pyarrow read_table + (n x d) numpy matrix", t_pa_np),
        ("kmeans_dask open_dataset (listing + footers)", t_open),
        ("kmeans_dask read -> persisted dask array", t_ours),
    ]
    for name, t in rows:
        print(f"{name:<46}{t:>10.3f}{size / 2**30 / t:>8.2f}")
    print(
        f"\nratio kmeans_dask persisted / pyarrow read_table: {t_ours / t_pa:.2f}x; "
        f"/ pyarrow read + matrix: {t_ours / t_pa_np:.2f}x  (target: <= 1.3x)"
    )
    print(f"partitions: {ds.frame.npartitions}; known divisions: {ds.frame.known_divisions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
