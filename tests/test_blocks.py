"""Block placement and planning on the real LocalCluster."""

from __future__ import annotations

import dask.array as da
import numpy as np

from kmeans_dask.engine.plan import plan_sizes
from kmeans_dask.engine.prepare import load_blocks, prepare_input


def test_plan_sizes_cover_rows_and_threads():
    assert plan_sizes(10, 8, 4, 1 << 30) == [3, 3, 2, 2]
    assert sum(plan_sizes(1_000_003, 256, 2, 64 << 20)) == 1_000_003
    assert len(plan_sizes(1_000_000, 256, 2, 64 << 20)) == 4  # 256 MB / 64 MB
    assert plan_sizes(3, 8, 8, 1 << 30) == [1, 1, 1]  # never an empty block


def test_blocks_are_spread_over_workers(client):
    workers = sorted(client.nthreads())
    X = da.random.default_rng(0).random((40_000, 8), chunks=(2_500, 8))
    X = client.persist(X, workers=[workers[0]])  # every input chunk on one worker
    bs = load_blocks(prepare_input(X, owner="test"), owner="test")
    try:
        who = client.who_has(bs.handles)
        per_worker = {w: 0 for w in workers}
        for h, n in zip(bs.handles, bs.sizes, strict=True):
            per_worker[who[h.key][0]] += n
        assert per_worker[workers[0]] == per_worker[workers[1]] == 20_000
        # the data is unchanged by the move
        from kmeans_dask.engine.lloyd import assign_blocks

        _labels, inertia = assign_blocks(bs, np.zeros((1, 8)), np.zeros(8))
        np.testing.assert_allclose(inertia, (X.compute() ** 2).sum(), rtol=1e-12)
    finally:
        bs.release()
