"""Where persisted blocks live: each loaded on the worker it will stay on, and blocks moved
once when the workers hold uneven shares (every iteration runs each block where it lives,
so an uneven placement makes one worker do most of each iteration)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["rebalance", "spread"]


def spread(weights: Sequence[float], capacity: dict[str, int]) -> list[str]:
    """A worker for each item, the heaviest first to the least-loaded worker relative to its
    ``capacity`` (threads): loads in proportion to the capacities, within one item.

    Deterministic for the same inputs (ties go to the first worker in sorted order).
    """
    workers = sorted(capacity)
    load = dict.fromkeys(workers, 0.0)
    out = [""] * len(weights)
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        dest = min(workers, key=lambda w: ((load[w] + weights[i]) / max(1, capacity[w]), w))
        out[i] = dest
        load[dest] += weights[i]
    return out


def rebalance(client: Any, handles: list, sizes: Sequence[int]) -> list:
    """Move blocks so that the workers hold rows in proportion to their threads; ``handles``
    is updated in place and the replaced handles are returned (for the caller to release).

    Blocks stay where they are while their worker is under its share (5% slack); the rest
    are copied (once) to the least-loaded workers.
    """
    nthreads = client.nthreads()
    if len(nthreads) < 2:
        return []
    total_threads = sum(nthreads.values())
    n = sum(sizes)
    quota = {w: n * t / total_threads for w, t in nthreads.items()}
    load = dict.fromkeys(nthreads, 0.0)
    who = client.who_has(handles)
    moves: dict[int, str] = {}
    for i in sorted(range(len(handles)), key=lambda i: -sizes[i]):
        here = [w for w in who.get(handles[i].key, ()) if w in load]
        if here and load[here[0]] + sizes[i] <= quota[here[0]] * 1.05:
            load[here[0]] += sizes[i]
            continue
        dest = min(load, key=lambda w: load[w] / quota[w])
        if not (here and dest == here[0]):
            moves[i] = dest
        load[dest] += sizes[i]
    if not moves:
        return []
    old = [handles[i] for i in moves]
    for i, dest in moves.items():
        handles[i] = client.submit(
            _identity, handles[i], workers=[dest], allow_other_workers=True, pure=False
        )
    from distributed import wait

    wait([handles[i] for i in moves])
    return old


def _identity(block: Any) -> Any:
    return block
