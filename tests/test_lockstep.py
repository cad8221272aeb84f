"""A K sweep's Lloyd E-steps in lockstep (:mod:`kmeans_dask.engine.lockstep`): one pass per
round for every fit still iterating, and the same bits as the fits run apart, on the real
LocalCluster, with persisted and streamed blocks, plain Lloyd and bounds."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from sklearn.datasets import make_blobs
from sklearn.metrics import pairwise_distances_argmin

from kmeans_dask.engine.blocks import BlockSet
from kmeans_dask.engine.estep import EStep, bounds_pass
from kmeans_dask.engine.lockstep import LOCKSTEP_KEY, Lockstep
from kmeans_dask.engine.source import BlockSource
from kmeans_dask.io import open_dataset
from kmeans_dask.sweep import sweep_k

KS = list(range(2, 9))
FEATURES = [f"f{i}" for i in range(5)]


def _blobs(n=12_000, seed=0) -> np.ndarray:
    # 5 overlapping blobs: K = 5 converges in a few iterations, the others take many more
    X, _ = make_blobs(n, n_features=5, centers=5, cluster_std=2.5, random_state=seed)
    return X


def _grid(n=6_000, seed=0) -> np.ndarray:
    # 12 distinct points, each many times: random initial rows coincide, clusters go empty
    rng = np.random.default_rng(seed)
    points = rng.integers(-3, 4, size=(12, 5)).astype(np.float64)
    return points[rng.integers(0, len(points), size=n)]


def _streamed(tmp_path, X: np.ndarray, persist: bool, parts: int = 6) -> BlockSet:
    """Blocks read from Parquet files: again on every pass (streamed) or once (persisted)."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(X)), parts)):
        pd.DataFrame(X[rows], columns=FEATURES).to_parquet(folder / f"part-{i}.parquet")
    source = BlockSource.from_dataset(open_dataset(str(folder), "parquet", FEATURES), "float64")
    recipes = source.recipes(target=len(X) // parts * 5 * 8)
    bs = BlockSet.from_recipes(recipes, 5, np.dtype("float64"), persist=persist)
    assert bs.n_blocks == parts and bs.streamed == (not persist)
    return bs


def _input(mode: str, X: np.ndarray, tmp_path):
    if mode == "streamed":
        return _streamed(tmp_path, X, persist=False)
    if mode == "persisted-recipes":
        return _streamed(tmp_path, X, persist=True)
    return da.from_array(X, chunks=1_500)  # persisted by the sweep, 8 blocks


def _sweep(X, lockstep: bool, **params):
    with dask.config.set({LOCKSTEP_KEY: lockstep, "kmeans_dask.block-bytes": "64KiB"}):
        return sweep_k(X, KS, silhouette_sample_size=1_000, random_state=0, **params)


def _assert_same(a, b) -> None:
    cols = [c for c in a.table.columns if not c.endswith("_seconds")]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols], check_exact=True)
    assert sorted(a.centres) == sorted(b.centres) == KS
    for k in KS:
        np.testing.assert_array_equal(a.centres[k], b.centres[k])
    # the labels of every K: all rows of the chosen K, the silhouette sample under every K
    # (and silhouette_full_sq above is computed from every K's labels of every row)
    assert a.k == b.k
    np.testing.assert_array_equal(np.asarray(a.model.labels_), np.asarray(b.model.labels_))
    np.testing.assert_array_equal(a.sample_labels, b.sample_labels)


def _lloyd_reads(ts, lockstep: bool) -> int:
    """Tasks that read every block once in a Lloyd pass (per-block passes, not actors)."""
    pattern = r"sweep-lloyd-(combined_pass|task)-" if lockstep else r"sweep-k\d+-(plain_pass|task)-"
    return sum(bool(re.match(pattern, str(t["key"]))) for t in ts.data)


@pytest.mark.parametrize("algorithm", ["lloyd", "bounds"])
@pytest.mark.parametrize("mode", ["persisted", "persisted-recipes", "streamed"])
def test_sweep_in_lockstep_equals_the_fits_apart(client, tmp_path, caplog, mode, algorithm):
    X = _blobs()
    data = _input(mode, X, tmp_path)
    caplog.set_level(logging.DEBUG, logger="kmeans_dask.engine.lockstep")
    params = dict(algorithm=algorithm, max_iter=100, tol=1e-6)
    with get_task_stream(client) as ts_on:
        on = _sweep(data, True, **params)
    passes = sum("lockstep pass" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with get_task_stream(client) as ts_off:
        off = _sweep(data, False, **params)
    assert not any("lockstep pass" in r.getMessage() for r in caplog.records)
    _assert_same(on, off)
    n_iter = on.table.n_iter.to_numpy()
    assert n_iter.max() >= 4 * n_iter.min(), n_iter  # the K stop at very different rounds
    # one pass per round for all K still iterating (a K joining late may run a round alone)
    assert n_iter.max() <= passes <= n_iter.max() + len(KS), (passes, n_iter)
    assert passes < 0.6 * n_iter.sum()
    if mode == "streamed":  # every round reads each block once, not once per K
        n_blocks = data.n_blocks
        assert _lloyd_reads(ts_off, False) == n_iter.sum() * n_blocks
        assert _lloyd_reads(ts_on, True) == passes * n_blocks
    # the reference: every K's inertia is that of its centres' nearest-centre assignment
    for k in KS:
        C = on.centres[k]
        d2 = ((X - C[pairwise_distances_argmin(X, C)]) ** 2).sum()
        np.testing.assert_allclose(on.table.set_index("k").inertia[k], d2, rtol=1e-9)


@pytest.mark.parametrize("algorithm", ["lloyd", "bounds"])
@pytest.mark.parametrize("mode", ["persisted", "streamed"])
def test_empty_cluster_relocation_in_lockstep(client, tmp_path, caplog, mode, algorithm):
    data = _input(mode, _grid(), tmp_path)
    caplog.set_level(logging.DEBUG, logger="kmeans_dask.lloyd")
    params = dict(algorithm=algorithm, init="random", max_iter=40, tol=0.0)
    on = _sweep(data, True, **params)
    relocated = sum("re-seeded" in r.getMessage() for r in caplog.records)
    off = _sweep(data, False, **params)
    assert relocated > 0  # some K relocated empty clusters (an extra pass of that fit alone)
    _assert_same(on, off)


# ----------------------------------------------------------------------- errors


def _two_fits(bs: BlockSet, lock: Lockstep, C: np.ndarray, bad_step) -> dict:
    """Fit A: three E-steps through the lockstep; fit B: one pass with ``step=bad_step``."""
    mean = bs.moments()[1]
    out: dict = {}
    estep = lock.estep(bs, mean, False)
    member = lock.join(True)

    def good() -> None:
        try:
            c = C
            for _ in range(3):
                total = estep(c)
                out.setdefault("a", []).append(total)
                c = total[0] / np.maximum(total[1], 1)[:, None]
        except Exception as exc:
            out["a_error"] = exc
        finally:
            estep.close()

    def bad() -> None:
        try:
            member.run(bounds_pass, True, step=bad_step)
        except Exception as exc:
            out["b_error"] = exc
        finally:
            member.leave()

    threads = [threading.Thread(target=good), threading.Thread(target=bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "the lockstep hung"
    return out


@pytest.mark.parametrize("mode", ["actors", "tasks", "streamed"])
def test_an_error_in_one_fits_pass_reaches_that_fit_only(client, tmp_path, mode):
    X = _blobs(6_000)
    bs = _streamed(tmp_path, X, persist=mode != "streamed")
    C = X[:4].copy()
    with dask.config.set({"kmeans_dask.worker-groups": mode == "actors"}):
        lock = Lockstep(bs)
        try:
            out = _two_fits(bs, lock, C, bad_step=None)  # bounds_pass(step=None) raises
        finally:
            lock.close()
        alone = EStep(bs, bs.moments()[1], False)
        try:
            c, ref = C, []
            for _ in range(3):
                ref.append(alone(c))
                c = ref[-1][0] / np.maximum(ref[-1][1], 1)[:, None]
        finally:
            alone.close()
    assert isinstance(out.get("b_error"), AttributeError), out
    assert "a_error" not in out, out
    assert lock.n_passes == 3  # the first round both, then A alone
    for got, want in zip(out["a"], ref, strict=True):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2:] == want[2:]


def test_a_failed_read_reaches_every_fit_of_the_round(client, tmp_path):
    X = _blobs(6_000)
    bs = _streamed(tmp_path, X, persist=False)
    os.remove(tmp_path / "in" / "part-3.parquet")
    lock = Lockstep(bs)
    try:
        out = _two_fits(bs, lock, X[:4].copy(), bad_step=None)
    finally:
        lock.close()
    assert "a_error" in out and "b_error" in out, out
    assert "part-3" in str(out["a_error"]), out["a_error"]


# ----------------------------------------------------------------------- worker loss


class _KillOnPass(logging.Handler):
    """SIGKILL one worker when the lockstep announces its ``n``-th pass."""

    def __init__(self, client: Client, n: int) -> None:
        super().__init__(logging.DEBUG)
        self.client, self.text, self.killed = client, f"lockstep pass {n}:", False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.killed and record.getMessage().startswith(self.text):
            pids = self.client.run(os.getpid)
            os.kill(pids[sorted(pids)[0]], signal.SIGKILL)
            self.killed = True


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["bounds"])  # the states are the harder case; lloyd
def test_worker_killed_mid_lockstep_gives_the_same_sweep(algorithm):  # takes the same path
    X = _blobs(40_000)
    params = dict(algorithm=algorithm, max_iter=40, tol=1e-6)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
        c.as_current(),
    ):
        ref = _sweep(da.from_array(X, chunks=5_000), True, **params)
        handler = _KillOnPass(c, 4)
        log = logging.getLogger("kmeans_dask.engine.lockstep")
        level = log.level
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        try:
            got = _sweep(da.from_array(X, chunks=5_000), True, **params)
        finally:
            log.removeHandler(handler)
            log.setLevel(level)
        assert handler.killed
        _assert_same(got, ref)
