"""Named random streams: every use of randomness draws from its own stream."""

from __future__ import annotations

import numpy as np
import pytest

from kmeans_dask.exceptions import InvalidParameterError
from kmeans_dask.kernels.streams import (
    DriverStream,
    Stream,
    kmeans_parallel_round,
    row_uniforms,
)

# k-means|| may run up to 2 * init_rounds rounds; test far beyond any realistic setting
ROUNDS = range(1, 10_001)


def test_every_stream_is_distinct():
    named = [int(s) for s in Stream]
    rounds = [kmeans_parallel_round(r) for r in ROUNDS]
    assert len(set(named)) == len(named)
    assert not set(named) & set(rounds)
    assert len(set(rounds)) == len(rounds)
    # the silhouette sample once shared k-means|| round 7's stream
    assert Stream.SILHOUETTE_SAMPLE != kmeans_parallel_round(7)
    assert len({int(s) for s in DriverStream}) == len(DriverStream)


def test_distinct_streams_draw_differently():
    seed, n = 123, 2_000
    draws = {int(s): row_uniforms(seed, s, 0, n) for s in Stream}
    draws.update({r: row_uniforms(seed, kmeans_parallel_round(r), 0, n) for r in range(1, 12)})
    keys = sorted(draws)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            # independent uniforms: equal draws would mean a shared stream
            assert not np.array_equal(draws[a], draws[b]), (a, b)
            assert abs(np.corrcoef(draws[a], draws[b])[0, 1]) < 0.1, (a, b)


@pytest.mark.parametrize("r", [0, -1, 1 << 40])
def test_round_out_of_range(r):
    with pytest.raises(InvalidParameterError, match="k-means\\|\\| round"):
        kmeans_parallel_round(r)
