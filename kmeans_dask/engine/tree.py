"""A reduction over blocks whose result does not depend on where the blocks are.

Per-block partials (sums, counts, costs) are added along one fixed binary tree over the
block indices ``0 .. n-1``: node ``[lo, hi)`` is the sum of ``[lo, mid)`` and ``[mid, hi)``
with ``mid = (lo + hi) // 2``, leaves are single blocks. A worker that holds any subset of
the blocks adds them up to the largest tree nodes the subset covers
(:func:`cover`, :func:`reduce_local`) and sends only those; the caller completes the tree
(:func:`reduce_root`). Floating-point addition is done in the same order whatever blocks each
worker holds, so a run gives bit-identical results on one worker, on many, after a worker
was lost and its blocks recomputed elsewhere, streamed or persisted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["add_partials", "cover", "reduce_local", "reduce_root"]

Node = tuple[int, int]


def add_partials(a: Any, b: Any) -> Any:
    """``a + b`` element by element for tuples of arrays and numbers (``None`` is zero)."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, tuple):
        return tuple(add_partials(x, y) for x, y in zip(a, b, strict=True))
    return a + b


def cover(indices: Iterable[int], n: int) -> list[Node]:
    """The largest tree nodes of ``[0, n)`` made only of blocks in ``indices`` (in order)."""
    have = set(indices)
    out: list[Node] = []

    def visit(lo: int, hi: int) -> None:
        inside = sum(i in have for i in range(lo, hi))  # O(n log n) over the whole tree
        if inside == 0:
            return
        if inside == hi - lo:
            out.append((lo, hi))
            return
        mid = (lo + hi) // 2
        visit(lo, mid)
        visit(mid, hi)

    if n > 0:
        visit(0, n)
    return out


def reduce_local(
    leaves: Mapping[int, Any], node: Node, add: Callable[[Any, Any], Any] = add_partials
) -> Any:
    """The partial of tree node ``node`` from the partials of all its blocks (``leaves``)."""
    lo, hi = node
    if hi - lo == 1:
        return leaves[lo]
    mid = (lo + hi) // 2
    return add(reduce_local(leaves, (lo, mid), add), reduce_local(leaves, (mid, hi), add))


def reduce_root(
    nodes: Mapping[Node, Any], n: int, add: Callable[[Any, Any], Any] = add_partials
) -> Any:
    """The total over ``[0, n)`` from partials of tree nodes that tile it (any mix of sizes)."""

    def value(lo: int, hi: int) -> Any:
        if (lo, hi) in nodes:
            return nodes[(lo, hi)]
        if hi - lo <= 1:
            raise KeyError(f"no partial covers block {lo}")
        mid = (lo + hi) // 2
        return add(value(lo, mid), value(mid, hi))

    return value(0, n)
