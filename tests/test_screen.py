"""The float32 screen of the float64 argmin (kernels/screen.py) gives the plain kernel's labels,
sums and inertia bit for bit: on random data, near and exact ties, data far from the origin,
values that overflow float32, odd tile counts, weights; and it settles most rows itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmeans_dask.kernels import lloyd as kernels
from kmeans_dask.kernels import screen


def _unscreened(cs: kernels.CentreSet) -> kernels.CentreSet:
    """The same centre set with the screen off: the plain kernel's own product and loop."""
    off = kernels.CentreSet(cs.centres, np.zeros(cs.centres.shape[1]))
    off.shifted_t, off.bias = cs.shifted_t, cs.bias
    off.screen = (False, *cs.screen[1:])
    return off


def _assert_same(X, C, ref, w=None):
    cs = kernels.CentreSet(C, ref)
    assert cs.screen[0], "the screen should be on for float64 data with this many centres"
    off = _unscreened(cs)
    for exact in (False, True):
        a = kernels.lloyd_partials(X, cs, w, exact=exact)
        b = kernels.lloyd_partials(X, off, w, exact=exact)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert a[2] == b[2]
    la, ma, ia = kernels.assign(X, cs, w)
    lb, mb, ib = kernels.assign(X, off, w)
    assert np.array_equal(la, lb) and np.array_equal(ma, mb) and ia == ib
    return la


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


@settings(max_examples=40, deadline=None)
@given(cases())
def test_screened_argmin_is_the_plain_kernels(case):
    X, C, w = case
    _assert_same(X, C, X.mean(axis=0), w)


def test_ties_and_midpoints_take_the_plain_tie_rule():
    rng = np.random.default_rng(3)
    d, k = 8, 16
    C = rng.normal(size=(k, d))
    C[5] = C[2]  # coincident centres: the first index wins
    C[9] = C[2]
    mids = [(C[a] + C[b]) / 2 for a in range(k) for b in range(a + 1, k)]
    X = np.vstack([C, np.array(mids), rng.normal(size=(3000, d)), C[2] + 1e-12])
    labels = _assert_same(X, C, X.mean(axis=0))
    assert labels[2] == 2 and labels[5] == 2 and labels[9] == 2


def test_far_from_origin_and_overflowing_values():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 6)) + 1e8  # centred by the screen: still settled
    C = X[:20] + 0.01
    _assert_same(X, C, X.mean(axis=0))
    # rows whose z overflows float32 (1e40) among ordinary ones: failed, decided in float64
    Y = rng.normal(size=(2100, 5))
    Y[::97] *= 1e40
    _assert_same(Y, Y[1:14].copy(), np.zeros(5))
    # centres beyond float32's range: no screen at all
    big = rng.normal(size=(300, 5)) * 1e25
    assert not kernels.CentreSet(big[:13], np.zeros(5)).screen[0]


def test_the_screen_settles_the_rows_of_ordinary_data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4096, 32))
    C = X[:64].copy()
    cs = kernels.CentreSet(C, X.mean(axis=0))
    sb = screen.screen_buffers(True, 64, 32)
    left = screen.screen_tile(X, 1024, 1024, cs.screen, sb)
    tried, failed = sb[7]
    assert tried == 1024 and left == 0
    assert failed < 10  # near-ties only, settled by the float64 row values
    G = X[1024:2048] @ cs.shifted_t
    expect = np.argmin(cs.bias - 2.0 * G, axis=1)
    assert np.array_equal(sb[5][:1024], expect) and sb[6][:1024].all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_screen_is_off_where_it_cannot_pay(dtype):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(100, 4)).astype(dtype)
    assert not kernels.CentreSet(X[: screen.SCREEN_MIN_K - 1], X.mean(0)).screen[0]
    assert kernels.CentreSet(X[: screen.SCREEN_MIN_K], X.mean(0)).screen[0] == (
        dtype == np.float64
    )


def test_a_chunk_of_ties_stops_screening_and_keeps_the_plain_labels():
    # every row on two coincident centres: each fails the screen, the chunk stops screening
    # after its first tiles (MAX_FAIL_SHARE) and the plain loop's tie rule decides
    rng = np.random.default_rng(7)
    C = rng.normal(size=(20, 6))
    C[11] = C[4]
    X = np.repeat(C[[4]], 6000, axis=0) + np.where(np.arange(6000) % 50 == 0, 1e-3, 0.0)[:, None]
    labels = _assert_same(X, C, X.mean(axis=0))
    assert (labels[np.arange(6000) % 50 != 0] == 4).all()
