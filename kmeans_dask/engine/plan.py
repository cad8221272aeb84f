"""Block planning: how many rows each persisted block holds, from the data alone.

Blocks hold about ``kmeans_dask.block-bytes`` (dask config, default 256 MiB) and there are at
least ``kmeans_dask.min-blocks`` of them (default 2, never under 4,096 rows each). The plan
depends only on the data and these two settings, never on the cluster: every partial (sums,
counts, costs, moments) is computed per block and reduced in block order, so the same data
gives bit-identical results on a local thread pool or on any number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import dask
import numpy as np
from dask.utils import parse_bytes

__all__ = [
    "BLOCK_BYTES_KEY",
    "MIN_BLOCKS_KEY",
    "balanced_runs",
    "group_consecutive",
    "min_blocks",
    "plan_sizes",
    "plan_units",
    "target_block_bytes",
]

#: dask config key: target bytes per persisted block ("auto" plans ~256 MiB blocks; ``None``
#: keeps the input's own chunking).
BLOCK_BYTES_KEY = "kmeans_dask.block-bytes"
_DEFAULT_BLOCK_BYTES = "256MiB"
#: dask config key: the least number of blocks (work for several workers on mid-size data)
MIN_BLOCKS_KEY = "kmeans_dask.min-blocks"
_DEFAULT_MIN_BLOCKS = 2
#: rows below which a block is not split further to reach ``min-blocks``
MIN_BLOCK_ROWS = 4096


def target_block_bytes() -> int | None:
    """Target block size from dask config ``kmeans_dask.block-bytes`` (None: keep chunking)."""
    value = dask.config.get(BLOCK_BYTES_KEY, _DEFAULT_BLOCK_BYTES)
    if value is None or value == "keep":
        return None
    if value == "auto":
        value = _DEFAULT_BLOCK_BYTES
    return int(parse_bytes(value)) if isinstance(value, str) else int(value)


def min_blocks() -> int:
    """The least number of blocks, from dask config ``kmeans_dask.min-blocks``."""
    return max(1, int(dask.config.get(MIN_BLOCKS_KEY, _DEFAULT_MIN_BLOCKS)))


def plan_sizes(n: int, row_bytes: int, target: int, least: int | None = None) -> list[int]:
    """Equal-ish block sizes for ``n`` rows: about ``target`` bytes each, and at least
    ``least`` blocks (default :func:`min_blocks`) unless that makes blocks under
    ``MIN_BLOCK_ROWS`` rows. Depends on the data only, never on the cluster."""
    if n == 0:
        return [0]
    least = min_blocks() if least is None else least
    per_block = max(1, target // max(row_bytes, 1))
    n_blocks = max(math.ceil(n / per_block), min(least, math.ceil(n / MIN_BLOCK_ROWS)))
    n_blocks = min(n_blocks, n)
    base, extra = divmod(n, n_blocks)
    return [base + (i < extra) for i in range(n_blocks)]


def group_consecutive(sizes: Sequence[int], row_bytes: int, target: int) -> list[list[int]]:
    """Group consecutive block indices so that each group holds about ``target`` bytes."""
    groups: list[list[int]] = []
    cur: list[int] = []
    cur_bytes = 0
    for i, s in enumerate(sizes):
        cur.append(i)
        cur_bytes += s * row_bytes
        if cur_bytes >= target:
            groups.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        groups.append(cur)
    return groups


def _fill(sizes: Sequence[int], capacity: int) -> list[list[int]]:
    # consecutive runs, each closed before it would exceed capacity (a unit alone may)
    groups: list[list[int]] = [[]]
    held = 0
    for i, s in enumerate(sizes):
        if groups[-1] and held + s > capacity:
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += s
    return groups


def balanced_runs(sizes: Sequence[int], n: int) -> list[list[int]]:
    """At most ``n`` runs of consecutive indices whose largest sum of ``sizes`` is the
    smallest possible (binary search on that largest sum, greedy fill)."""
    lo, hi = max(sizes), sum(sizes)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_fill(sizes, mid)) <= n:
            hi = mid
        else:
            lo = mid + 1
    return _fill(sizes, lo)


def plan_units(
    unit_rows: Sequence[int | None],
    unit_bytes: Sequence[int],
    row_bytes: int,
    target: int,
    least: int | None = None,
) -> list[list[int]]:
    """Blocks as runs of consecutive read units (Parquet row groups, files), from the data.

    A unit's size is its rows x ``row_bytes`` when its row count is known (Parquet footers),
    else its stored bytes. The data makes ``ceil(total / target)`` blocks of consecutive
    units, cut so that the largest block is as small as the units allow (16 files of 61 MiB
    with a 256 MiB target give 4 blocks of 4 files, not 5, 5, 5 and 1: every iteration waits
    for the worker with the largest block); then the largest runs are split until there are
    ``least`` blocks (default :func:`min_blocks`) when the units allow it. A unit is never
    split: a block reads each of its units exactly once, so a streamed pass reads the data
    exactly once.
    """
    least = min_blocks() if least is None else least
    sizes = [
        r * row_bytes if r is not None else int(b)
        for r, b in zip(unit_rows, unit_bytes, strict=True)
    ]
    if not sizes:
        return []
    groups = balanced_runs(sizes, min(len(sizes), max(1, math.ceil(sum(sizes) / target))))
    while len(groups) < least:
        splittable = [i for i in range(len(groups)) if len(groups[i]) >= 2]
        if not splittable:
            break
        big = max(splittable, key=lambda i: sum(sizes[j] for j in groups[i]))
        g = groups.pop(big)
        # split where the bytes are halved, so both halves hold about the same data
        cum = np.cumsum([sizes[i] for i in g])
        half = int(np.searchsorted(cum, cum[-1] / 2)) + 1
        half = min(max(half, 1), len(g) - 1)
        groups[big:big] = [g[:half], g[half:]]
    return groups
