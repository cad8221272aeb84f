"""Where a persisted Lloyd iteration's time goes: the kernel on each worker, and the rest
(issue 11, the per-row flatness).

    python benchmarks/bench_overhead.py [--rows 1000000 2000000 4000000 8000000]
                                        [--k 8] [--passes 21] [--rounds 2]

For every size it reads ``bench_scale.py``'s data (``benchmarks/data/scale-{rows}x32-s0.5/``,
generated when absent) into persisted blocks exactly as the job plans them, starts the
per-worker actors the Lloyd iterations use (``engine.groups.WorkerGroups``), and runs
``--passes`` E-steps of the plain kernel through them, each followed by a timing pass:

* the E-step as the iterations run it (``engine.estep.plain_pass``, no exact distances):
  the wall time of one pass, client to client;
* then the same kernel on every block as one task per block on the worker that holds it,
  timed inside the task: the kernel seconds summed per worker.

It prints, per size: the block plan and placement, the median wall time of a pass, the
median kernel time of the busiest worker and of the average worker (both per 1M rows), and
the wall time minus the busiest worker's kernel time: what the call, the reduction and the
scheduling of the blocks on the worker's thread cost on top of the arithmetic. ``--rounds``
repeats all sizes in rounds (the machine's speed drifts between minutes), on one cluster
(``LocalCluster(2 workers x 1 thread)``), one size at a time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _kernel_seconds(block, cs) -> float:
    """Seconds of the plain kernel on one block (as ``plain_pass`` calls it)."""
    from kmeans_dask.kernels.lloyd import lloyd_partials

    t0 = time.perf_counter()
    lloyd_partials(block.X, cs, block.w, False)
    return time.perf_counter() - t0


def _one(client, rows: int, k: int, passes: int) -> dict:
    from bench_scale import _folder, _generate

    from kmeans_dask.engine.blocks import BlockSet
    from kmeans_dask.engine.estep import plain_pass
    from kmeans_dask.engine.groups import WorkerGroups
    from kmeans_dask.engine.source import BlockSource
    from kmeans_dask.io import open_dataset
    from kmeans_dask.kernels.lloyd import CentreSet

    folder = _folder(rows, 32)
    _generate(folder, rows, 32)
    src = BlockSource.from_dataset(open_dataset(str(folder)), np.float32)
    with client.as_current():
        bs = BlockSet.from_recipes(src.recipes(), src.n_features, src.dtype, persist=True)
        groups = WorkerGroups.start(bs)
        if groups is None:
            raise SystemExit("the per-worker actors could not start")
        try:
            who = client.who_has(bs.handles)
            per_worker = {w: [i for i, h in enumerate(bs.handles) if w in who[h.key]]
                          for w in client.nthreads()}  # fmt: skip
            first = client.submit(lambda b: b.X[:k].copy(), bs.handles[0]).result()
            cs = CentreSet(first, np.zeros(first.shape[1]))
            for _ in range(3):  # warm-up: numba's cache, the actors' first calls
                groups.run(plain_pass, cs=cs, exact=False)
            walls, busiest, mean = [], [], []
            for _ in range(passes):
                t0 = time.perf_counter()
                groups.run(plain_pass, cs=cs, exact=False)
                walls.append(time.perf_counter() - t0)
                # per-worker kernel seconds: one call per block, on the worker holding it
                secs = client.gather(
                    [client.submit(_kernel_seconds, bs.handles[i], cs, workers=[w],
                                   allow_other_workers=False, pure=False)
                     for w, idx in per_worker.items() for i in idx]
                )  # fmt: skip
                it = iter(secs)
                totals = [sum(next(it) for _ in idx) for idx in per_worker.values()]
                busiest.append(max(totals))
                mean.append(float(np.mean(totals)))
        finally:
            groups.close()
            bs.release()
    wall, top, avg = (float(np.median(v)) for v in (walls, busiest, mean))
    return {
        "rows": rows,
        "blocks": bs.n_blocks,
        "sizes": list(bs.sizes),
        "placement": sorted(len(v) for v in per_worker.values()),
        "wall": wall,
        "busiest": top,
        "mean": avg,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000,
                                                             8_000_000])  # fmt: skip
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--passes", type=int, default=21)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)

    from distributed import Client, LocalCluster

    from kmeans_dask import worker_settings

    print(f"k = {args.k}, float32, d = 32, {args.passes} passes per size and round; per 1M rows "
          "in brackets; 'rest' = wall - busiest worker's kernel")  # fmt: skip
    with worker_settings(), \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        for r in range(args.rounds):
            for rows in args.rows:
                res = _one(client, rows, args.k, args.passes)
                m = rows / 1e6
                print(
                    f"round {r + 1} {m:g}M: {res['blocks']} blocks (rows {min(res['sizes'])}"
                    f"-{max(res['sizes'])}, per worker {res['placement']}): wall "
                    f"{res['wall'] * 1e3:.1f} ms ({res['wall'] / m * 1e3:.2f}), kernel busiest "
                    f"{res['busiest'] * 1e3:.1f} ms ({res['busiest'] / m * 1e3:.2f}), average "
                    f"{res['mean'] * 1e3:.1f} ms ({res['mean'] / m * 1e3:.2f}), rest "
                    f"{(res['wall'] - res['busiest']) * 1e3:.1f} ms",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
