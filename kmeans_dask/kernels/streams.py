"""Named random streams: counter-based row draws and the driver's seeded generators.

Row draws are counter-based (Philox keyed by ``(seed, stream)`` and advanced to the global
row), so the draw of a row depends only on ``(seed, stream, row)``: sampling decisions are
the same for any chunking and on any worker. Every use of randomness has its own stream, so
that no two decisions of one fit (or of a sweep and its metrics) share draws.

Stream numbers are 64-bit words. k-means|| round ``r`` uses stream ``r`` (rounds start at 1;
the first centre uses 0); every other use lives above ``2**40``, out of reach of any round.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["DriverStream", "Stream", "kmeans_parallel_round", "row_uniforms"]

_HIGH = 1 << 40


class Stream(IntEnum):
    """Counter-based row streams (see :func:`row_uniforms`)."""

    FIRST_CENTRE = 0  # k-means||: the first centre, one uniform draw
    KMEANSPP_SAMPLE = 1 * _HIGH  # init='k-means++': the Bernoulli row sample
    RANDOM_ROWS = 2 * _HIGH  # init='random': weighted sampling keys
    SILHOUETTE_SAMPLE = 3 * _HIGH  # the stratified sample of the exact silhouette
    MINIBATCH_SAMPLE = 4 * _HIGH  # algorithm='minibatch': the Bernoulli sample pool


class DriverStream(IntEnum):
    """Spawn keys of the driver-side generators, ``np.random.default_rng([seed, key, ...])``."""

    CANDIDATE_REDUCTION = 1  # k-means||: weighted k-means++ trials on the candidates (+ K)
    KMEANSPP = 2  # init='k-means++': greedy k-means++ on the sample
    MINIBATCH_INIT = 3  # algorithm='minibatch': init and validation subsets of the pool
    MINIBATCH_STEPS = 4  # algorithm='minibatch': batch draws and centre reassignments


def kmeans_parallel_round(r: int) -> int:
    """The stream of k-means|| sampling round ``r`` (1-based)."""
    if not 1 <= r < _HIGH:
        raise InvalidParameterError(f"k-means|| round must be in [1, 2**40); got {r}")
    return int(r)


def row_uniforms(seed: int, stream: int, offset: int, n: int) -> np.ndarray:
    """Uniform [0, 1) draws for global rows ``offset .. offset + n`` of one random stream.

    Counter-based (Philox): the draw of a row depends only on ``(seed, stream, row)``, not on
    how the rows are chunked, so sampling decisions are reproducible for any chunking and
    any worker that computes them.
    """
    bg = np.random.Philox(key=(int(seed) % (1 << 64)) << 64 | (int(stream) % (1 << 64)))
    bg.advance(offset // 4)  # Philox yields four 64-bit words per counter step
    g = np.random.Generator(bg)
    skip = offset % 4
    if skip:
        g.random(skip)
    return g.random(n)
