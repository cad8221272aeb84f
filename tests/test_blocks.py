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


def test_spread_places_items_in_proportion_to_threads():
    """The heaviest first to the least-loaded worker relative to its threads."""
    from kmeans_dask.engine.placement import spread

    assert spread([5, 5, 5, 5], {"a": 1, "b": 1}) == ["a", "b", "a", "b"]
    assert spread([8, 2, 2, 2, 2], {"a": 1, "b": 1}) == ["a", "b", "b", "b", "b"]
    placed = spread([1.0] * 9, {"a": 2, "b": 1})
    assert placed.count("a") == 6 and placed.count("b") == 3
    assert spread([], {"a": 1}) == []


def test_persisted_recipes_load_where_they_stay(client):
    """Persisted blocks from recipes are loaded on the workers in proportion to their
    threads from the start (no worker first holds more than its share)."""
    from kmeans_dask.engine.block import make_block
    from kmeans_dask.engine.blocks import BlockSet

    class Rows:
        def __init__(self, n):
            self.n_rows = n

        def load(self):
            return make_block(np.ones((self.n_rows, 2)), None, np.float64)

    from kmeans_dask.engine.placement import spread

    sizes = [400, 300, 300, 200, 200, 100, 100, 100, 100, 100]
    plan = spread(sizes, client.nthreads())
    for _ in range(3):
        bs = BlockSet.from_recipes([Rows(n) for n in sizes], 2, np.float64, persist=True)
        who = client.who_has(bs.handles)
        assert [who[h.key] for h in bs.handles] == [(w,) for w in plan]
        per_worker = [sum(n for n, w in zip(sizes, plan, strict=True) if w == x) for x in set(plan)]
        assert sorted(per_worker) == [900, 1000]  # within one block of equal
        bs.release()
