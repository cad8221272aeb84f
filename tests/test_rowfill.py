"""The compiled column-to-row fill of the array reader (``kmeans_dask.io.rowfill``) against
numpy's assignment: every value, cast, offset and column view, and its finiteness sums."""

from __future__ import annotations

import numpy as np
import pytest

from kmeans_dask.io.rowfill import fill_rows


@pytest.mark.parametrize("src", [np.float64, np.float32])
@pytest.mark.parametrize("dst", [np.float64, np.float32])
@pytest.mark.parametrize(("m", "d"), [(1, 1), (513, 9), (2_000, 64), (700, 3)])
def test_fill_equals_numpy(src, dst, m, d):
    rng = np.random.default_rng(m * d)
    arrays = [rng.normal(scale=10.0 ** rng.integers(-3, 30), size=m).astype(src) for _ in range(d)]
    if d > 2:
        arrays[1][m // 2] = np.nan
        arrays[2][0] = np.inf
    block = np.full((m + 10, d + 4), -7.0, dtype=dst)
    out = block[:, 2 : 2 + d]  # the reader fills column ranges of a block (a strided view)
    sums = np.zeros(d)
    assert fill_rows(arrays, out, 5, sums)
    expect = np.full_like(block, -7.0)
    with np.errstate(over="ignore"):
        for j, a in enumerate(arrays):
            expect[5 : 5 + m, 2 + j] = a
    np.testing.assert_array_equal(block, expect)  # the rest of the block untouched
    with np.errstate(over="ignore", invalid="ignore"):
        finite = [np.isfinite(expect[5 : 5 + m, 2 + j].sum(dtype=np.float64)) for j in range(d)]
    assert list(np.isfinite(sums)) == finite


def test_float64_beyond_float32_becomes_inf_in_the_sums():
    out = np.empty((2, 1), dtype=np.float32)
    sums = np.zeros(1)
    assert fill_rows([np.array([1.0, 1e39])], out, 0, sums)
    assert np.isinf(out[1, 0]) and not np.isfinite(sums[0])


def test_writable_and_read_only_columns_mix():
    a = np.arange(4.0)
    b = np.arange(4.0)
    b.flags.writeable = False  # Arrow's zero-copy views are read-only
    out = np.empty((4, 2))
    assert fill_rows([a, b], out, 0, np.zeros(2))
    np.testing.assert_array_equal(out, np.column_stack([a, b]))
    assert a.flags.writeable  # the caller's array keeps its flag


@pytest.mark.parametrize(
    "arrays",
    [
        [np.arange(3, dtype=np.int64), np.arange(3.0)],  # not all floating
        [np.arange(3.0), np.arange(3.0, dtype=np.float32)],  # two dtypes
        [np.arange(6.0)[::2], np.arange(3.0)],  # not contiguous
        [],
    ],
)
def test_other_columns_are_left_to_the_caller(arrays):
    out = np.zeros((3, max(1, len(arrays))))
    assert not fill_rows(arrays, out, 0, np.zeros(out.shape[1]))
    assert not out.any()
