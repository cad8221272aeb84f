"""Block placement and planning on the real LocalCluster."""

from __future__ import annotations

import dask.array as da
import numpy as np

from kmeans_dask.engine.plan import plan_sizes
from kmeans_dask.engine.prepare import load_blocks, prepare_input


def test_plan_sizes_depend_on_the_data_only():
    assert plan_sizes(10, 8, 1 << 30, least=4) == [10]  # blocks of >= 4,096 rows
    assert plan_sizes(20_000, 8, 1 << 30, least=4) == [5_000] * 4
    assert sum(plan_sizes(1_000_003, 256, 64 << 20, least=2)) == 1_000_003
    assert len(plan_sizes(1_000_000, 256, 64 << 20, least=2)) == 4  # 256 MB / 64 MB
    assert len(plan_sizes(1_000_000, 256, 64 << 20, least=8)) == 8
    assert plan_sizes(0, 8, 1 << 30) == [0]


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
