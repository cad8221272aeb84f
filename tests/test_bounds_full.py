"""The bounds-pruned E-step's tiles recomputed whole from the float32 screen
(kernels/bounds_full.py): the plain kernel's sums, weights, inertia and labels bit for bit,
the same upper bounds as the float64 tile, lower bounds that are true bounds and nearly as
tight; on random data, ties, data far from the origin and values that overflow float32, in
full passes and in the pruned passes that follow them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_dask.kernels import lloyd as kernels
from kmeans_dask.kernels import screen
from kmeans_dask.kernels.bounds import bounds_partials, bounds_step


def _step(C, prev, ref, groups=None, base=None, on=True):
    step = bounds_step(C, prev, ref, prev is None, groups, base)
    if not on:
        step.cs.screen = (False, *step.cs.screen[1:])
    return step


def _true_bounds_hold(X, C, state):
    """Every stored bound, read at the centres ``C``, is a true bound."""
    n = len(X)
    D = np.sqrt(((X[:, None, :] - C[None]) ** 2).sum(axis=2))
    rows = np.arange(n)
    assert np.all(state.upper_bounds() >= D[rows, state.labels] * (1 - 1e-12))
    D[rows, state.labels] = np.inf
    bounds = state.bounds()
    for g in range(state.lower.shape[1]):
        Dg = D[:, state.groups == g]
        second = Dg.min(axis=1) if Dg.shape[1] else np.full(n, np.inf)
        assert np.all(bounds[:, g] <= second * (1 + 1e-12)), g


def _run(X, C0, w, n_iter=8, ref=None):
    """Lloyd iterations with the bounds (screen on, state in place) against the plain kernel,
    every step checked; returns the first (full) pass's states with the screen on and off."""
    ref = X.mean(axis=0) if ref is None else ref
    assert _step(C0, None, ref).cs.screen[0], "the screen should be on here"
    first_on = bounds_partials(X, w, _step(C0, None, ref), None)
    first_off = bounds_partials(X, w, _step(C0, None, ref, on=False), None)
    for a, b in zip(first_on[:4], first_off[:4], strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(first_on[4].labels, first_off[4].labels)
    assert np.array_equal(first_on[4].upper, first_off[4].upper)
    C, prev, state, groups, base = C0, None, None, None, None
    for it in range(n_iter):
        plain = kernels.lloyd_partials(X, kernels.CentreSet(C, ref), w)
        step = _step(C, prev, ref, groups, base)
        groups, base = step.groups, step.cum
        sums, wsum, inertia, _, state = bounds_partials(X, w, step, state, inplace=True)
        assert np.array_equal(sums, plain[0]) and np.array_equal(wsum, plain[1]), it
        assert inertia == (plain[2] if it == 0 else 0.0), it
        labels, _, _ = kernels.assign(X, kernels.CentreSet(C, ref), w)
        assert np.array_equal(state.labels, labels), it
        _true_bounds_hold(X, C, state)
        prev = C
        C, _, _ = kernels.m_step(C, plain[0], plain[1],
                                 lambda m: (X[:m], np.zeros(m, int), np.ones(m)))
        if it % 3 == 2:  # a jump: a pruned pass recomputes the tiles most of whose rows fail
            C = C.copy()
            C[it % len(C)] = X[(7 * it) % len(X)]
    return first_on[4], first_off[4]


@st.composite
def cases(draw):
    n = draw(st.integers(1, 2600))
    d = draw(st.integers(1, 40))
    k = draw(st.integers(screen.SCREEN_MIN_K, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    X = rng.normal(size=(n, d)) * scale + draw(st.sampled_from([0.0, 5.0, 1e5]))
    C = X[rng.integers(0, n, size=k)] + rng.normal(size=(k, d)) * scale * draw(
        st.sampled_from([0.0, 1e-9, 0.3])
    )
    w = rng.uniform(0, 3, size=n) if draw(st.booleans()) else None
    return X, C, w


@settings(max_examples=25, deadline=None)
@given(cases())
def test_screened_full_tiles_are_the_plain_kernels(case):
    X, C, w = case
    _run(X, C, w, n_iter=6)


def test_screened_bounds_are_nearly_as_tight():
    rng = np.random.default_rng(7)
    centres = rng.normal(scale=6.0, size=(40, 16))
    X = centres[rng.integers(0, 40, 5000)] + rng.normal(size=(5000, 16))
    on, off = _run(X, X[rng.choice(5000, 40, replace=False)].copy(), None, n_iter=4)
    # the screen's bounds were taken (they differ), and they lose little
    assert not np.array_equal(on.lower, off.lower)
    lo_on, lo_off = on.bounds(), off.bounds()
    keep = lo_off > 0
    assert np.median(lo_on[keep] / lo_off[keep]) > 0.999
    assert np.mean(lo_on[keep] >= 0.9 * lo_off[keep]) > 0.95


def test_ties_far_data_and_overflowing_rows():
    rng = np.random.default_rng(8)
    # every row four times on a coarse grid, coincident centres: exact ties everywhere
    G = np.repeat(rng.integers(-3, 4, size=(900, 3)).astype(np.float64), 4, axis=0)
    C = G[rng.choice(len(G), 16, replace=False)].copy()
    C[3] = C[1]
    _run(G, C, None)
    # far from the origin (the screen centres the rows)
    F = rng.normal(size=(3000, 5)) + 1e8
    _run(F, F[:20] + 0.01, None)
    # rows beyond the screen's overflow guard (||z|| R > 1e30) among ordinary ones, decided
    # from their float64 values: their bounds are 0 (the float32 values are not trusted
    # there), the others' are kept
    Y = rng.normal(size=(2100, 5)) * 1e14
    Y[::97] *= 1e3
    on, _ = _run(Y, Y[1:17].copy(), rng.uniform(0.5, 2, len(Y)), n_iter=3, ref=np.zeros(5))
    far = np.arange(len(Y)) % 97 == 0
    assert np.all(on.lower[far] == 0) and np.all(on.lower[~far].max(axis=1) > 0)
    # rows whose values overflow float32 itself: the float64 tile decides, results the same
    Y[::97] *= 1e30
    _run(Y, Y[1:17].copy(), None, n_iter=3, ref=np.zeros(5))
