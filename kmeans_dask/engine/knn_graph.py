"""Dask graphs of the chunked KNN search: the plumbing under :class:`KNeighborsScorer`.

For every query block::

    query chunk -> check -+-> pair(q, ref block 0) -+
                          +-> pair(q, ref block 1) -+-> merge -> ... -> merge -> output
                          +-> pair(q, ref block B) -+   (tree, fan-in MERGE_FAN_IN)

A ``pair`` task reads one query block and one reference block and returns their exact top-k,
``(squared distance, global row, label)`` each of shape ``(n_query_block, k)``
(:func:`kmeans_dask.knn_kernels.block_topk`, which itself never holds more than a
``TILE_QUERY x TILE_REF`` tile of distances), or, when the reference carries landmark
indexes (``algorithm`` 'pruned' / 'auto': one
:class:`~kmeans_dask.kernels.knn_index.ClusterIndex` per block, built at the first search
that can pay for it by a task on the block's worker and kept there: :mod:`.knn_reference`),
the same top-k from :func:`kmeans_dask.kernels.knn_pruned.pruned_topk`; every pair also
returns its distance counts ``[computed, total]``, summed by the merges. ``merge`` tasks
keep the k smallest by (distance, index); the output task votes or averages. The reference
blocks stay where they were persisted (futures on the workers, so pair tasks run there);
queries stay lazy; nothing but small metadata reaches the caller. Task keys are
``knn-{query,pair,merge}-<token>-...``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import dask
import numpy as np

from ..exceptions import InputError
from ..kernels import knn as kk
from ..kernels import knn_index as ki
from ..kernels import knn_pruned as kp
from ..kernels import knn_vote as kv
from ..validation import check_finite, check_magnitude, is_dask_array, is_dask_frame
from .blocks import Block
from .knn_reference import AUTO_QUERIES_PER_CLUSTER, Reference

__all__ = [
    "AUTO_QUERIES_PER_CLUSTER",
    "MERGE_FAN_IN",
    "Reference",
    "mean_columns",
    "mean_target",
    "neighbours",
    "per_block",
    "search",
    "search_stats",
    "to_arrays",
    "to_frame",
    "vote_columns",
    "vote_labels",
    "vote_proba",
]

#: Top-k lists merged per task of the reduction tree over the reference blocks.
MERGE_FAN_IN = 8


def search(ref: Reference, Xq: Any, k: int, names: list[str] | None) -> tuple[list, str]:
    """Per query block of ``Xq`` (a dask array with one column chunk), a Delayed of its
    merged top-k ``(sq_dist, global_index, values)`` over all reference blocks; and the
    search's mode (:meth:`Reference.plan`)."""
    token = uuid.uuid4().hex[:12]
    parts = Xq.to_delayed(optimize_graph=False)[:, 0]
    starts = np.cumsum([0, *Xq.chunks[0]])[:-1].tolist()
    check = dask.delayed(_check_query, pure=True)
    pair = dask.delayed(_pair, pure=True)
    bs = ref.blocks
    mode, index = ref.plan(int(sum(Xq.chunks[0])), k)
    index = index if index is not None else [None] * len(ref.nodes)
    out = []
    for qi, (part, row0) in enumerate(zip(parts, starts, strict=True)):
        q = check(part, bs.dtype, row0, names, dask_key_name=f"knn-query-{token}-{qi}")
        labels = ref.labels if ref.labels is not None else [None] * len(ref.nodes)
        pairs = [
            pair(
                q,
                node,
                lab,
                off,
                k,
                ref.mu,
                ref.fill,
                ix,
                mode,
                dask_key_name=f"knn-pair-{token}-{qi}-{j}",
            )
            for j, (node, lab, off, ix) in enumerate(
                zip(ref.nodes, labels, bs.offsets, index, strict=True)
            )
        ]
        out.append(_tree_merge(pairs, k, f"knn-merge-{token}-{qi}"))
    return out, mode


def _check_query(part: Any, dtype: np.dtype, row0: int, names: list[str] | None) -> np.ndarray:
    P = np.asarray(part)
    check_finite(P, "KNeighborsScorer", names, row0, "X")
    # before the cast: a float64 value beyond float32's range must not become inf
    check_magnitude(P, "KNeighborsScorer", names, dtype=dtype, param="X")
    return np.ascontiguousarray(P, dtype=dtype)


def _pair(
    Q: np.ndarray,
    block: Any,
    labels: Any,
    offset: int,
    k: int,
    mu: np.ndarray,
    fill: Any,
    index: ki.ClusterIndex | None = None,
    mode: str = "brute",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pair's top-k ``(sq_dist, global row, label)`` and its distance counts
    ``[computed, n_query x n_ref]``."""
    if not isinstance(block, Block):  # a streamed block's recipe: read it here
        block = block.load()
        if labels is not None:
            block = Block(block.X, block.w, np.asarray(labels), block.unit_rows)
    if mode == "brute" or index is None:
        d2, idx, _ = kk.block_topk(Q, block.X, k, mu, offset)
        total = Q.shape[0] * block.X.shape[0]
        counts = np.array([total, total], dtype=np.int64)
    else:
        d2, idx, counts = kp.pruned_topk(Q, block.X, index, k, mu, offset, mode)
    return d2, idx, kk.gather_values(block.labels, idx, offset, fill), counts


def _merge(*parts: tuple, k: int) -> tuple:
    counts = np.sum([p[3] for p in parts], axis=0)
    return (*kk.merge_topk([p[:3] for p in parts], k), counts)


def search_stats(merged: list, mode: str) -> Any:
    """A Delayed of the distance counts of a search (compute it with the search's outputs:
    the graphs share their keys, so the search runs once); ``mode`` is the search's, from
    :meth:`Reference.plan`."""
    return dask.delayed(_stats, pure=True)(*merged, mode=mode)


def _stats(*merged: tuple, mode: str) -> dict[str, Any]:
    computed, total = (int(v) for v in np.sum([m[3] for m in merged], axis=0))
    skipped = total - computed
    fraction = skipped / total if total else 0.0
    return {
        "mode": mode,
        "computed": computed,
        "total": total,
        "skipped": skipped,
        "skipped_fraction": fraction,
    }


def _tree_merge(parts: list, k: int, name: str) -> Any:
    merge = dask.delayed(_merge, pure=True)
    level = 0
    while len(parts) > 1:
        parts = [
            merge(*parts[i : i + MERGE_FAN_IN], k=k, dask_key_name=f"{name}-{level}-{i}")
            for i in range(0, len(parts), MERGE_FAN_IN)
        ]
        level += 1
    return parts[0]


# --------------------------------------------------------------------------- outputs


def neighbours(merged: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances and global indices of the neighbours."""
    d2, idx, _ = merged[:3]
    return np.sqrt(d2), idx


def vote_labels(merged: tuple, classes: np.ndarray, weights: str) -> tuple[np.ndarray]:
    """(predicted label,) per query row: the neighbour vote (``KNeighborsClassifier.predict``)."""
    d2, _, codes = merged[:3]
    _, pred, _ = kv.vote(np.sqrt(d2), codes, len(classes), weights)
    return (classes[pred],)


def vote_proba(merged: tuple, classes: np.ndarray, weights: str) -> tuple[np.ndarray]:
    """(share of the neighbour weight per class,) per query row."""
    d2, _, codes = merged[:3]
    proba, _, _ = kv.vote(np.sqrt(d2), codes, len(classes), weights)
    return (proba,)


def vote_columns(merged: tuple, classes: np.ndarray, weights: str) -> tuple:
    """The score columns of a vote: (label, vote share, k-th distance, mean distance)."""
    d2, _, codes = merged[:3]
    dist = np.sqrt(d2)
    _, pred, share = kv.vote(dist, codes, len(classes), weights)
    return classes[pred], share, dist[:, -1], dist.mean(axis=1)


def mean_target(merged: tuple, weights: str) -> tuple[np.ndarray]:
    """(mean target of the neighbours,) per query row (``KNeighborsRegressor.predict``)."""
    d2, _, target = merged[:3]
    return (kv.neighbour_mean(np.sqrt(d2), target, weights),)


def mean_columns(merged: tuple, weights: str) -> tuple:
    """The score columns of a regression: (mean target, k-th distance, mean distance)."""
    d2, _, target = merged[:3]
    dist = np.sqrt(d2)
    return kv.neighbour_mean(dist, target, weights), dist[:, -1], dist.mean(axis=1)


def per_block(merged: list, func: Callable, *args: Any) -> list:
    """``func(merged_block, *args)`` as one task per query block (each returns a tuple)."""
    task = dask.delayed(func, pure=True)
    return [task(m, *args) for m in merged]


def to_arrays(results: list, row_chunks: tuple, specs: list[tuple]) -> list:
    """One dask array per output ``(dtype, n_columns or None)`` of per-block tuples."""
    import dask.array as da

    arrays = []
    for o, (dtype, cols) in enumerate(specs):
        blocks = [
            da.from_delayed(r[o], shape=(n,) if cols is None else (n, cols), dtype=dtype)
            for r, n in zip(results, row_chunks, strict=True)
        ]
        arrays.append(da.concatenate(blocks) if len(blocks) > 1 else blocks[0])
    return arrays


def to_frame(results: list, row_chunks: tuple, ids: Any, columns: dict, owner: str) -> Any:
    """A dask DataFrame from per-block tuples of column values.

    ``columns`` maps names to dtypes; the first is the id column, filled from ``ids``
    (aligned with the query rows; default: the row positions). The index is the query row.
    """
    import dask.dataframe as dd
    import pandas as pd

    id_parts, id_dtype = _query_id_parts(ids, row_chunks, owner)
    columns = dict(columns)
    id_column = next(iter(columns))
    columns[id_column] = id_dtype
    meta = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in columns.items()})
    starts = np.cumsum([0, *row_chunks])[:-1].tolist()
    build = dask.delayed(_frame_block, pure=True)
    frames = [
        build(r, ids_i, row0, n, list(columns))
        for r, ids_i, row0, n in zip(results, id_parts, starts, row_chunks, strict=True)
    ]
    n = int(sum(row_chunks))
    divisions = (*starts, n - 1) if all(c > 0 for c in row_chunks) else None
    return dd.from_delayed(frames, meta=meta, divisions=divisions, verify_meta=False)


def _frame_block(values: tuple, ids: Any, row0: int, n: int, columns: list[str]) -> Any:
    import pandas as pd

    index = pd.RangeIndex(row0, row0 + n)
    if ids is None:
        ids = np.arange(row0, row0 + n)
    elif isinstance(ids, pd.Series):
        ids = pd.Series(ids.array, index=index)  # keeps extension dtypes (strings)
    frame = pd.DataFrame({columns[0]: ids}, index=index)
    for name, v in zip(columns[1:], values, strict=True):
        frame[name] = v
    return frame


def _slice_series(a: int, b: int, starts: list[int], *parts: Any) -> Any:
    """Rows ``a .. b`` of a series given as consecutive partitions starting at ``starts``."""
    import pandas as pd

    pieces = [p.iloc[max(a - s, 0) : b - s] for p, s in zip(parts, starts, strict=True)]
    return pd.concat(pieces) if len(pieces) > 1 else pieces[0]


def _query_id_parts(ids: Any, chunks: tuple, owner: str) -> tuple[list, Any]:
    """``ids`` split like the query blocks (lazy parts for dask input), and their dtype."""
    import pandas as pd

    n = int(sum(chunks))
    bounds = np.cumsum([0, *chunks]).tolist()
    if ids is None:
        return [None] * len(chunks), np.dtype(np.int64)
    if isinstance(ids, pd.DataFrame) or (is_dask_frame(ids) and ids.ndim == 2):
        if len(ids.columns) != 1:
            _check_ids(None, ids.shape, n, owner)
        ids = ids[ids.columns[0]]
    if is_dask_frame(ids):  # a dask Series: slice its partitions lazily, dtype kept
        lengths = [int(v) for v in ids.map_partitions(len).compute()]
        _check_ids(sum(lengths), (sum(lengths),), n, owner)
        starts = np.cumsum([0, *lengths]).tolist()
        parts = ids.to_delayed(optimize_graph=False)
        cut = dask.delayed(_slice_series, pure=True)
        out = []
        for a, b in itertools.pairwise(bounds):
            sel = [i for i in range(len(lengths)) if starts[i] < b and starts[i + 1] > a]
            out.append(cut(a, b, [starts[i] for i in sel], *[parts[i] for i in sel]))
        return out, ids.dtype
    if isinstance(ids, pd.Series):
        _check_ids(len(ids), (len(ids),), n, owner)
        ids = ids.reset_index(drop=True)
        return [ids.iloc[a:b] for a, b in itertools.pairwise(bounds)], ids.dtype
    if not is_dask_array(ids):
        ids = np.asarray(ids)
    _check_ids(ids.shape[0] if ids.ndim else None, ids.shape, n, owner)
    if is_dask_array(ids):
        return list(ids.rechunk((chunks,)).to_delayed(optimize_graph=False)), ids.dtype
    return [ids[a:b] for a, b in itertools.pairwise(bounds)], ids.dtype


def _check_ids(length: Any, shape: tuple, n: int, owner: str) -> None:
    if len(shape) != 1 or length != n:
        raise InputError(
            f"The 'ids' parameter of {owner}.score_frame must be 1-D with one value per row "
            f"of X ({n} rows). Got shape {shape} instead."
        )
