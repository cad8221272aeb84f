"""Block planning: how many rows each persisted block holds (about a target size in bytes,
at least one block per worker thread), from dask config ``kmeans_dask.block-bytes``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import dask
from dask.utils import parse_bytes

__all__ = ["BLOCK_BYTES_KEY", "group_consecutive", "plan_sizes", "target_block_bytes"]

#: dask config key: target bytes per persisted block ("auto" plans ~256 MiB blocks, at least
#: one per worker thread; ``None`` keeps the input's own chunking).
BLOCK_BYTES_KEY = "kmeans_dask.block-bytes"
_DEFAULT_BLOCK_BYTES = "256MiB"


def target_block_bytes() -> int | None:
    """Target block size from dask config ``kmeans_dask.block-bytes`` (None: keep chunking)."""
    value = dask.config.get(BLOCK_BYTES_KEY, _DEFAULT_BLOCK_BYTES)
    if value is None or value == "keep":
        return None
    if value == "auto":
        value = _DEFAULT_BLOCK_BYTES
    return int(parse_bytes(value)) if isinstance(value, str) else int(value)


def plan_sizes(n: int, row_bytes: int, n_threads: int, target: int) -> list[int]:
    """Equal-ish block sizes: about ``target`` bytes each, at least one block per thread."""
    if n == 0:
        return [0]
    per_block = max(1, target // max(row_bytes, 1))
    n_blocks = max(math.ceil(n / per_block), n_threads)
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
