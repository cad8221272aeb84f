"""Bounds-pruned Lloyd (``algorithm="bounds"``) gives exactly plain Lloyd's results.

The kernel is compared with the plain kernel on sequences of centres (Lloyd's own and
adversarial jumps): bit-identical partial sums and weights (and inertia in full passes), the
plain labels, lower bounds that never exceed the true distance to the second-closest centre
and upper bounds never below the distance to the assigned one. The estimator
is compared with ``algorithm="lloyd"`` on several data sets (separated, overlapping, duplicate
rows with coincident centres, an empty cluster re-seeded), chunkings, dtypes, locally and on
the LocalCluster: the same labels, ``n_iter_``, centres (bit for bit), inertia and history.
"""

from __future__ import annotations

import pickle

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from kmeans_dask import KMeans
from kmeans_dask.engine.estep import SWITCH_KEY
from kmeans_dask.engine.fit import use_bounds
from kmeans_dask.engine.memory import bounds_bytes_per_row, state_bytes_per_row
from kmeans_dask.kernels import bounds as bounds_module
from kmeans_dask.kernels.bounds import (
    BoundsState,
    bounds_partials,
    bounds_step,
    centre_groups,
    n_groups,
)
from kmeans_dask.kernels.lloyd import CentreSet, assign, lloyd_partials, m_step
from kmeans_dask.kernels.segments import TILE_ROWS, segment_rows

DTYPES = [np.float64, np.float32]


def _data(kind: str, dtype, n: int = 6_000, seed: int = 0) -> np.ndarray:
    if kind == "separated":
        X, _ = make_blobs(n, n_features=6, centers=20, cluster_std=0.5, center_box=(-30, 30),
                          random_state=seed)
    elif kind == "overlap":
        X, _ = make_blobs(n, n_features=6, centers=20, cluster_std=3.0, center_box=(-5, 5),
                          random_state=seed)
    elif kind == "far":  # far from the origin: float32 products are coarse there
        X, _ = make_blobs(n, n_features=4, centers=8, cluster_std=1.0, center_box=(-8, 8),
                          random_state=seed)
        X = X + 3_000.0
    elif kind == "duplicates":  # every row four times, on a coarse grid: exact ties
        rng = np.random.default_rng(seed)
        X = np.repeat(rng.integers(-4, 5, size=(n // 4, 3)).astype(np.float64), 4, axis=0)
        X = X[rng.permutation(len(X))]
    else:
        raise AssertionError(kind)
    return np.ascontiguousarray(X, dtype=dtype)


# ------------------------------------------------------------------ the kernel


def _run_kernel(X, w, centre_seq, ref, inplace=False, local=True):
    """Feed a sequence of centres to both kernels; check every step; return the skips."""
    state, prev, skipped, groups, base = None, None, 0, None, None
    n, k = X.shape[0], centre_seq[0].shape[0]
    for it, C in enumerate(centre_seq):
        s1, w1, i1 = lloyd_partials(X, CentreSet(C, ref), w)
        step = bounds_step(C, prev, ref, False, groups, base)
        groups, base = step.groups, step.cum
        s2, w2, i2, computed, state = bounds_partials(X, w, step, state, inplace=inplace,
                                                      local=local)
        np.testing.assert_array_equal(s2, s1, err_msg=f"sums, step {it}")
        np.testing.assert_array_equal(w2, w1, err_msg=f"weights, step {it}")
        # the exact inertia in a full pass (the first), 0 in a pruned one (as without exact)
        assert i2 == (i1 if it == 0 else 0.0), (it, i2, i1)
        labels, _, _ = assign(X, CentreSet(C, ref), w)
        np.testing.assert_array_equal(state.labels, labels, err_msg=f"labels, step {it}")
        # the lower bounds are true lower bounds of the second-closest distance, the upper
        # bounds true upper bounds of the distance to the assigned centre
        D = np.sqrt(((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2)
                    .sum(axis=2))
        assert np.all(state.upper_bounds() >= D[np.arange(n), labels] * (1 - 1e-12)), it
        D[np.arange(n), labels] = np.inf
        bounds = state.bounds()  # the stored values less their cumulative drifts
        for g in range(state.lower.shape[1]):  # per group of centres
            Dg = D[:, groups == g]
            second = Dg.min(axis=1) if Dg.shape[1] else np.full(n, np.inf)
            assert np.all(bounds[:, g] <= second * (1 + 1e-12)), (it, g)
        skipped += n * k - computed
        prev = C
    return skipped


def _lloyd_sequence(X, C0, ref, n_iter, w=None):
    seq, C = [], C0
    for _ in range(n_iter):
        seq.append(C)
        sums, wsum, _ = lloyd_partials(X, CentreSet(C, ref), w)
        C, _, _ = m_step(C, sums, wsum, lambda m: (X[:m], np.zeros(m, int), np.ones(m)))
    return seq


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["separated", "overlap", "far", "duplicates"])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_matches_plain_on_lloyd_iterations(kind, dtype, weighted):
    X = _data(kind, dtype, n=4_000)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.1, 3.0, len(X)) if weighted else None
    ref = X.astype(np.float64).mean(axis=0)
    k = 16
    C0 = X[rng.choice(len(X), k, replace=False)].copy()
    if kind == "duplicates":
        C0[1] = C0[0]  # coincident centres: every distance to them is an exact tie
    skipped = _run_kernel(X, w, _lloyd_sequence(X, C0, ref, 12, w), ref)
    if not (kind == "far" and dtype == np.float32):
        assert skipped > 0.1 * len(X) * k * 12, skipped
    # float32 far from the origin: the plain kernel's own rounding is coarse there, near-ties
    # are everywhere, and the blocks take the plain product (exact, no saving)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_bounds_hold_under_arbitrary_centre_jumps(dtype):
    """Centres that move anywhere (not by a mean update): jumps, swaps, coincidences, one
    centre, and back; the bounds must stay valid and the results the plain kernel's."""
    X = _data("overlap", dtype, n=3_000, seed=1)
    ref = X.astype(np.float64).mean(axis=0)
    rng = np.random.default_rng(5)
    C = X[rng.choice(len(X), 8, replace=False)].copy()
    seq = [C]
    for t in range(25):
        C = C.copy()
        if t % 5 == 0:
            C[rng.integers(8)] = X[rng.integers(len(X))]  # a jump to a data row
        elif t % 5 == 1:
            C[[0, 1]] = C[[1, 0]]  # a swap: large shifts, the same set
        elif t % 5 == 2:
            C[2] = C[3]  # coincident
        else:
            C += rng.normal(scale=0.05 * (t % 3), size=C.shape).astype(dtype)
        seq.append(C)
    _run_kernel(X, None, seq, ref)
    one = [X[:1].copy(), X[1:2].copy(), X[1:2].copy()]  # k = 1
    _run_kernel(X, None, one, ref)


def test_kernel_full_step_is_plain():
    X = _data("overlap", np.float32, n=2_500)
    ref = X.astype(np.float64).mean(axis=0)
    C = X[:5].copy()
    s1, w1, i1 = lloyd_partials(X, CentreSet(C, ref))
    s2, w2, i2, computed, _ = bounds_partials(X, None, bounds_step(C, C, ref, True), None)
    np.testing.assert_array_equal(s2, s1)
    np.testing.assert_array_equal(w2, w1)
    assert i2 == i1 and computed == len(X) * 5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("kind", "k"), [("blobs", 64), ("overlap", 64), ("blobs", 200),
                                         ("far", 40), ("duplicates", 30)])
def test_kernel_grouped_bounds_many_centres(kind, k, dtype):
    """Yinyang's grouped bounds (k // 10 groups): Lloyd steps, then jumps of one centre far
    away (one group's bounds must absorb it), weights, the state updated in place."""
    if kind == "blobs":
        X, _ = make_blobs(3_000, n_features=5, centers=k, cluster_std=1.0,
                          center_box=(-40, 40), random_state=k)
        X = np.ascontiguousarray(X, dtype=dtype)
    else:
        X = _data(kind, dtype, n=3_000, seed=k)
    rng = np.random.default_rng(k)
    w = rng.uniform(0.2, 2.0, len(X)) if k % 20 == 0 else None
    ref = X.astype(np.float64).mean(axis=0)
    C0 = X[rng.choice(len(X), k, replace=False)].copy()
    if kind == "duplicates":
        C0[3] = C0[2]
    seq = _lloyd_sequence(X, C0, ref, 10, w)
    for _ in range(4):  # jumps, then Lloyd again from there
        C = seq[-1].copy()
        C[rng.integers(k)] = X[rng.integers(len(X))]
        seq += _lloyd_sequence(X, C, ref, 3, w)
    skipped = _run_kernel(X, w, seq, ref, inplace=True)
    if kind == "blobs":
        assert skipped > 0.5 * len(X) * k * len(seq), skipped


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_segments_of_several_tiles_recomputed_whole(dtype, weighted):
    """A pruned pass recomputes a whole segment when its first tile needed every distance
    (its sums then added from zero, not summed again per centre): segments of two tiles
    here (d = 15, k = 80), rows sorted by blob so that after some centres jump some
    segments' first tiles fail while their second tiles (or the next segments) do not, and
    the odd last segment; the results stay the plain kernel's, the bounds true bounds."""
    k, d = 80, 15
    assert segment_rows(k, d) == 2 * TILE_ROWS
    X, y = make_blobs(9_500, n_features=d, centers=k // 2, cluster_std=2.0,
                      center_box=(-12, 12), random_state=7)
    X = np.ascontiguousarray(X[np.argsort(y, kind="stable")], dtype=dtype)
    rng = np.random.default_rng(8)
    w = rng.uniform(0.2, 2.0, len(X)) if weighted else None
    ref = X.astype(np.float64).mean(axis=0)
    C0 = X[rng.choice(len(X), k, replace=False)].copy()
    seq = _lloyd_sequence(X, C0, ref, 8, w)
    C = seq[-1].copy()
    moved = rng.choice(k, k // 4, replace=False)
    C[moved] += rng.normal(scale=3.0, size=(len(moved), d)).astype(dtype)
    seq += [C, *_lloyd_sequence(X, C, ref, 4, w)]
    big = seq[-1] + rng.normal(scale=2.0, size=(k, d)).astype(dtype)  # every centre moves
    seq += [big, *_lloyd_sequence(X, big, ref, 3, w)]
    skipped = _run_kernel(X, w, seq, ref, inplace=True)
    assert skipped > 0, skipped


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["separated", "overlap", "duplicates"])
def test_local_filter_matches_plain_with_fewer_distances(kind, dtype, monkeypatch):
    """Yinyang's local filter (a row whose bounds fail computes the distances to the failing
    groups' centres only) gives the plain kernel's results and valid bounds, labels moving
    between groups included, and computes fewer distances than the same passes without it.
    (Tiles most of whose rows fail are otherwise recomputed whole from the float32 screen:
    that rule is off here, so that the filter runs on this small overlapping data.)"""
    monkeypatch.setattr(bounds_module, "SCREENED_FULL_SHARE", 2.0)
    X = _data(kind, dtype, n=6_000, seed=2)
    rng = np.random.default_rng(4)
    w = rng.uniform(0.1, 3.0, len(X))
    ref = X.astype(np.float64).mean(axis=0)
    k = 48  # four groups of twelve
    C0 = X[rng.choice(len(X), k, replace=False)].copy()
    if kind == "duplicates":
        C0[1] = C0[0]
    seq = _lloyd_sequence(X, C0, ref, 14, w)
    # a jump after the first passes: many rows fail on some groups only
    C = seq[6].copy()
    C[rng.integers(k)] = X[rng.integers(len(X))]
    seq = [*seq[:7], C, *_lloyd_sequence(X, C, ref, 6, w)]
    with_local = _run_kernel(X, w, seq, ref, inplace=True)
    without = _run_kernel(X, w, seq, ref, inplace=True, local=False)
    assert with_local > without, (with_local, without)


def test_centre_groups_are_balanced():
    """Evenly spread centres (where an unconstrained k-means of the centres puts most of them
    in one group) are split into groups of at most ceil(k / t) centres."""
    rng = np.random.default_rng(0)
    for k, t in ((64, 6), (256, 25), (48, 4), (7, 3)):
        C = rng.uniform(-10, 10, size=(k, 32))
        sizes = np.bincount(centre_groups(C, t))
        assert len(sizes) == t and sizes.max() <= -(-k // t), (k, t, sizes)


def test_centre_groups_and_mismatched_state():
    """The grouping is deterministic, numbers its groups 0..t-1, keeps near centres together;
    a state built for another grouping is recomputed (exact, no pruning)."""
    assert [n_groups(k) for k in (1, 19, 20, 64, 256, 10_000)] == [1, 1, 2, 6, 25, 32]
    X, _ = make_blobs(2_000, n_features=3, centers=40, cluster_std=0.3, random_state=1)
    C = X[:40].copy()
    g = centre_groups(C, 4)
    np.testing.assert_array_equal(g, centre_groups(C.copy(), 4))
    assert sorted(set(g.tolist())) == [0, 1, 2, 3]
    assert np.all(centre_groups(C, 1) == 0) and len(set(centre_groups(C[:3], 8))) == 3
    ref = X.mean(axis=0)
    _, _, _, _, state = bounds_partials(X, None, bounds_step(C, None, ref, True, g), None)
    other = (g + 1) % 4
    s1, _, i1 = lloyd_partials(X, CentreSet(C, ref))
    s2, _, i2, computed, state2 = bounds_partials(
        X, None, bounds_step(C, C, ref, False, other), state, inplace=True
    )
    assert computed == len(X) * 40 and i2 == i1
    np.testing.assert_array_equal(s2, s1)
    np.testing.assert_array_equal(state2.groups, other)


def test_state_written_against_other_cumulative_drifts_is_recomputed():
    """The stored bounds are read less the cumulative drifts they were written against; a
    step built on other cumulative drifts (a lost or repeated pass) recomputes the block
    rather than read them against the wrong ones; the right base prunes."""
    X, _ = make_blobs(3_000, n_features=4, centers=30, cluster_std=0.5, center_box=(-30, 30),
                      random_state=2)
    ref = X.mean(axis=0)
    C0 = X[:30].copy()
    # late iterations: the centres move little, so most rows' bounds hold
    seq = _lloyd_sequence(X, C0, ref, 12)[-4:]
    first = bounds_step(seq[0], None, ref, True)
    _, _, _, _, state = bounds_partials(X, None, first, None, inplace=True)
    second = bounds_step(seq[1], seq[0], ref, False, first.groups, first.cum)
    _, _, _, computed, state = bounds_partials(X, None, second, state, inplace=True)
    assert computed < len(X) * 30  # pruned: the base matches
    np.testing.assert_array_equal(state.cum[0], second.cum[0])
    # the third step built on the first step's drifts again: recomputed in full, exact
    stale = bounds_step(seq[2], seq[1], ref, False, first.groups, first.cum)
    s1, w1, i1 = lloyd_partials(X, CentreSet(seq[2], ref))
    s2, w2, i2, computed, state = bounds_partials(X, None, stale, state, inplace=True)
    assert computed == len(X) * 30 and i2 == i1
    np.testing.assert_array_equal(s2, s1)
    np.testing.assert_array_equal(w2, w1)
    # and the state now reads against the stale step's drifts: its successor prunes again
    nxt = bounds_step(seq[3], seq[2], ref, False, first.groups, stale.cum)
    s1, _, i1 = lloyd_partials(X, CentreSet(seq[3], ref))
    s2, _, i2, computed, state = bounds_partials(X, None, nxt, state, inplace=True)
    assert computed < len(X) * 30 and i2 == 0.0  # pruned: no inertia
    np.testing.assert_array_equal(s2, s1)


@pytest.mark.parametrize("k", [5, 64, 256])
def test_broadcast_pickles_as_its_inputs(k):
    """What an iteration sends to every worker (a step, or a plain pass's centre set) is
    pickled as its inputs, the centres once, and rebuilt where it lands into the same arrays:
    the kernels give bit for bit the same results with the rebuilt broadcast."""
    rng = np.random.default_rng(k)
    X = np.ascontiguousarray(rng.normal(size=(3_000, 32)) * 4.0)
    ref = X.mean(axis=0)
    C0 = X[rng.choice(len(X), k, replace=False)].copy()
    C1 = C0 + rng.normal(scale=1e-3, size=C0.shape)
    first = bounds_step(C0, None, ref, True)
    step = bounds_step(C1, C0, ref, False, first.groups, None)
    blob = pickle.dumps(step, protocol=5)
    # the centres (k x 32 float64) once, plus O(k) vectors: not the centres in six forms
    assert len(blob) < C1.nbytes + 400 * k + 4_096
    back = pickle.loads(blob)
    for name in ("shifted64", "shifted64_t", "centre_sq", "drift", "groups", "reference"):
        np.testing.assert_array_equal(getattr(back, name), getattr(step, name))
    for a, b in zip(back.grouped, step.grouped, strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("centres", "shifted_t", "bias", "reference"):
        np.testing.assert_array_equal(getattr(back.cs, name), getattr(step.cs, name))
    for a, b in zip(back.cs.screen, step.cs.screen, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.full == step.full
    for a, b in zip(back.base + back.cum, step.base + step.cum, strict=True):
        np.testing.assert_array_equal(a, b)
    cs_blob = pickle.dumps(step.cs, protocol=5)
    assert len(cs_blob) < C1.nbytes + 32 * 8 + 1_024
    _, _, _, _, state = bounds_partials(X, None, first, None, inplace=False)
    ours = bounds_partials(X, None, step, state, inplace=False)
    theirs = bounds_partials(X, None, back, state, inplace=False)
    for a, b in zip(ours[:4], theirs[:4], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours[4].lower, theirs[4].lower)
    plain = lloyd_partials(X, step.cs)
    again = lloyd_partials(X, pickle.loads(cs_blob))
    for a, b in zip(plain, again, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ the estimator


def _fit_pair(X, backend_chunks, dtype, **params):
    fits = {}
    for algorithm in ("lloyd", "bounds"):
        km = KMeans(algorithm=algorithm, **params)
        Xin = X if backend_chunks is None else da.from_array(X, chunks=(backend_chunks, -1))
        km.fit(Xin)
        fits[algorithm] = km
    return fits["lloyd"], fits["bounds"]


def _assert_same(plain, bounded):
    np.testing.assert_array_equal(bounded.cluster_centers_, plain.cluster_centers_)
    np.testing.assert_array_equal(
        np.asarray(bounded.labels_.compute()), np.asarray(plain.labels_.compute())
    )
    assert bounded.n_iter_ == plain.n_iter_
    assert bounded.inertia_ == plain.inertia_
    assert bounded.converged_ == plain.converged_
    assert [h.inertia for h in bounded.history_] == [h.inertia for h in plain.history_]
    assert [h.center_shift for h in bounded.history_] == [h.center_shift for h in plain.history_]
    assert [h.n_empty for h in bounded.history_] == [h.n_empty for h in plain.history_]
    assert all(h.n_skipped == 0 for h in plain.history_)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("kind", "chunks"), [("separated", 4_000), ("overlap", 1_777), ("far", 2_501)]
)
def test_estimator_same_as_lloyd(kind, chunks, dtype, backend, keep_chunks):
    X = _data(kind, dtype, n=4_000)  # one block, or odd blocks of 1,777 / 2,501 rows
    plain, bounded = _fit_pair(
        X, chunks, dtype, n_clusters=20, init="random", random_state=4, max_iter=30, tol=1e-6
    )
    _assert_same(plain, bounded)
    if kind == "separated" and dtype == np.float64:
        spared = sum(h.n_skipped for h in bounded.history_)
        assert spared > 0.5 * len(X) * 20 * (bounded.n_iter_ - 1), spared


@pytest.mark.parametrize("dtype", DTYPES)
def test_estimator_ties_and_empty_cluster_relocation(dtype, backend, keep_chunks):
    """Duplicate rows and two coincident initial centres: the second one ties with the first
    for every row (the lowest index wins), is empty, and is re-seeded (farthest rows); a
    centre far away is empty too."""
    X = _data("duplicates", dtype, n=4_000)
    rng = np.random.default_rng(2)
    init = X[rng.choice(len(X), 10, replace=False)].copy()
    init[1] = init[0]
    init[9] = 50.0
    plain, bounded = _fit_pair(
        X, 1_333, dtype, n_clusters=10, init=init, max_iter=30, tol=0.0
    )
    assert plain.history_[0].n_empty >= 2
    _assert_same(plain, bounded)


def test_estimator_sample_weight_and_one_block(backend):
    X = _data("overlap", np.float64, n=3_000)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    fits = [
        KMeans(16, algorithm=a, init="random", random_state=1, max_iter=25).fit(
            X, sample_weight=w
        )
        for a in ("lloyd", "bounds")
    ]
    _assert_same(*fits)


def test_auto_rule_and_memory():
    assert use_bounds("bounds", 2, 1, np.float32)
    assert not use_bounds("lloyd", 256, 32, np.float64)
    assert use_bounds("auto", 16, 32, np.float64)
    assert not use_bounds("auto", 16, 32, np.float32)
    assert not use_bounds("auto", 64, 32, np.float32)  # slower than plain in float32 (bench)
    assert not use_bounds("auto", 256, 32, np.float32)  # 104 bytes of bounds > half of 128
    assert use_bounds("auto", 256, 64, np.float32)  # faster than plain from k = 256 (bench)
    assert not use_bounds("auto", 128, 64, np.float32)
    assert use_bounds("auto", 256, 32, np.float64)
    assert not use_bounds("auto", 256, 16, np.float64)  # 104 bytes > half of 128
    assert use_bounds("auto", 64, 32, np.float64)
    assert not use_bounds("auto", 15, 32, np.float64)
    assert not use_bounds("auto", 64, 2, np.float32)  # bounds > half a row's bytes
    # an int32 label, a float32 upper bound, a float32 lower bound per group of centres, and
    # at most 8 bytes of segment sums
    assert [BoundsState.bytes_per_row(k) for k in (2, 19, 20, 64, 256, 1000)] == [
        20, 20, 24, 40, 116, 144]
    assert bounds_bytes_per_row([3, 4, 64]) == 20 + 20 + 40
    assert state_bytes_per_row(9, 36) == state_bytes_per_row(9) + 36
    X = _data("separated", np.float64, n=2_000)
    with dask.config.set({SWITCH_KEY: np.inf}):  # prune from the second iteration
        auto = KMeans(16, algorithm="auto", init="random", random_state=0, max_iter=10).fit(X)
    lloyd = KMeans(16, algorithm="lloyd", init="random", random_state=0, max_iter=10).fit(X)
    _assert_same(lloyd, auto)
    assert sum(h.n_skipped for h in auto.history_) > 0  # 'auto' chose bounds here


class _ArrayRecipe:
    """A streamed block read again from an array on every pass (a stand-in for a file)."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self.loads = 0

    def load(self):
        from kmeans_dask.engine.block import make_block

        self.loads += 1
        return make_block(self.X.copy(), None, self.X.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("switch", [np.inf, 0.02])  # prune in every iteration / adaptive
def test_streamed_blocks_keep_their_bounds_and_match_lloyd(dtype, switch):
    """Streamed blocks (read again every pass): the bounds stay in memory between passes;
    the fit equals plain Lloyd's on the same stream and on the in-memory data."""
    from kmeans_dask.engine.blocks import BlockSet

    X = _data("separated", dtype, n=5_000)
    fits = {}
    for algorithm in ("lloyd", "bounds"):
        recipes = [_ArrayRecipe(X[i : i + 1_700]) for i in range(0, len(X), 1_700)]
        bs = BlockSet.from_recipes(recipes, X.shape[1], np.dtype(dtype), persist=False)
        assert bs.streamed
        km = KMeans(20, algorithm=algorithm, init="random", random_state=4, max_iter=30)
        with dask.config.set({SWITCH_KEY: switch}):
            fits[algorithm] = km.fit(bs)
        assert min(r.loads for r in recipes) >= km.n_iter_  # every pass read the blocks
    _assert_same(fits["lloyd"], fits["bounds"])
    if switch == np.inf:
        assert sum(h.n_skipped for h in fits["bounds"].history_) > 0


def test_job_with_bounds_equals_job_with_lloyd(tmp_path, client):
    """``kmeans.algorithm: bounds`` in a job (read, scale, sweep K = 3..4, assign): the same
    K, inertia and assignments as ``lloyd``; the memory plan counts the bounds."""
    import json
    from pathlib import Path

    import pandas as pd

    from kmeans_dask.job.config import parse_config
    from kmeans_dask.job.demo import DEMO_FEATURES, make_customers
    from kmeans_dask.job.pipeline import run

    df, _ = make_customers(3000, seed=2)
    (tmp_path / "in").mkdir()
    for i, start in enumerate(range(0, len(df), 1100)):
        part = df.drop(columns=["region"]).iloc[start : start + 1100]
        part.to_parquet(tmp_path / "in" / f"part-{i}.parquet", index=False)
    out = {}
    for algorithm in ("lloyd", "bounds"):
        data = {
            "name": f"b-{algorithm}",
            "input": {
                "uri": str(tmp_path / "in"),
                "id_column": "customer_id",
                "columns": DEMO_FEATURES,
            },
            "kmeans": {"k": "auto", "k_min": 3, "k_max": 4, "algorithm": algorithm,
                       "random_state": 0},
            "output": {"uri": str(tmp_path / f"out-{algorithm}")},
        }
        res = run(parse_config(data), client=client)
        results = Path(res.results_uri)
        manifest = json.loads((results / "manifest.json").read_text())
        assignments = pd.read_parquet(results / "assignments").sort_values("customer_id")
        out[algorithm] = (res.k, manifest, assignments.reset_index(drop=True))
    (k1, m1, a1), (k2, m2, a2) = out["lloyd"], out["bounds"]
    assert k1 == k2
    assert m1["metrics"]["inertia"] == m2["metrics"]["inertia"]
    assert m1["metrics"]["n_iter"] == m2["metrics"]["n_iter"]
    pd.testing.assert_frame_equal(a1, a2)
    # two K alive at once in the sweep, 20 bytes a row each (one group of centres)
    assert m2["memory"]["state_bytes"] - m1["memory"]["state_bytes"] == len(df) * 20 * 2


@pytest.mark.parametrize("seed", range(8))
def test_kernel_matches_plain_on_random_problems(seed):
    """Random small problems (a property test with seeded draws): sizes across the kernel's
    1,024-row blocks, 1 to 40 centres, 1 to 9 features, grids with exact ties, scales and
    offsets from tiny to far, float32 and float64, weights or not; Lloyd steps mixed with
    random jumps of the centres."""
    rng = np.random.default_rng(1000 + seed)
    dtype = DTYPES[seed % 2]
    n = int(rng.integers(50, 2_600))
    d = int(rng.integers(1, 10))
    k = int(rng.integers(1, 41))
    scale = 10.0 ** rng.uniform(-3, 3)
    offset = 10.0 ** rng.uniform(-3, 4) * rng.choice([0, 1])
    if seed % 3 == 0:  # a grid: duplicates and exact ties
        X = rng.integers(-3, 4, size=(n, d)).astype(np.float64) * scale + offset
    else:
        X = rng.normal(size=(n, d)) * scale + offset
    X = np.ascontiguousarray(X, dtype=dtype)
    w = rng.uniform(0, 2, n) if seed % 4 == 1 else None
    ref = X.astype(np.float64).mean(axis=0)
    C = X[rng.choice(n, min(k, n), replace=False)].copy()
    seq = []
    for t in range(15):
        seq.append(C)
        if t % 4 == 3:
            C = C.copy()
            j = rng.integers(len(C))
            C[j] = X[rng.integers(n)]  # a jump (may coincide with another centre)
            continue
        sums, wsum, _ = lloyd_partials(X, CentreSet(C, ref), w)
        C, _, _ = m_step(C, sums, wsum, lambda m: (X[:m], np.zeros(m, int), np.ones(m)))
    _run_kernel(X, w, seq, ref)
