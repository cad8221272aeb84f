"""Input preparation: split a validated input into row parts and persist them as blocks.

Type, shape and dtype checks come from :mod:`kmeans_dask.validation`; this module plans the
row parts (no pass over the data) and, in :func:`load_blocks`, persists them and checks what
only a pass can tell (NaN/inf per column, weights, emptiness, values so large that squared
distances would overflow).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import InputError
from ..validation import (
    check_array,
    check_dask_array,
    check_vector_shape,
    float_dtype,
    is_dask_array,
    is_dask_frame,
    magnitude_error,
    nonfinite_error,
    select_features,
)
from .blocks import BlockSet
from .plan import plan_sizes, target_block_bytes

__all__ = ["PreparedInput", "check_blocks", "load_blocks", "prepare_input", "prepared_blocks"]


@dataclass
class PreparedInput:
    """Input split into row parts, ready to persist as blocks."""

    in_memory: bool  # parts are numpy arrays (else dask Delayed objects)
    parts: list
    weight_parts: list | None
    sizes: list[int] | None  # rows per part when known
    row_chunks: tuple | None  # the caller's own row chunking (to align outputs)
    dtype: np.dtype
    n_features: int
    feature_names: list[str] | None
    lazy: bool  # the caller passed a dask collection
    label_parts: list | None = None  # cluster labels aligned with the parts (metrics)


@dataclass(frozen=True)
class _Aligned:
    """Per-row vectors that travel with the rows: sample weights and labels/targets."""

    sample_weight: Any
    labels: Any
    labels_dtype: Any
    labels_name: str

    @property
    def any(self) -> bool:
        return self.sample_weight is not None or self.labels is not None


def prepare_input(
    X: Any,
    sample_weight: Any = None,
    *,
    owner: str,
    feature_names: list[str] | None = None,
    labels: Any = None,
    labels_dtype: Any = np.int64,
    labels_name: str = "labels",
) -> PreparedInput:
    """Check type, shape and dtypes of ``X`` (no pass over the data) and split it into parts.

    numpy arrays, pandas DataFrames, dask arrays and dask DataFrames are accepted. float32
    stays float32; other numeric types become float64. ``feature_names`` selects columns
    of a DataFrame by name (the names seen in ``fit``). ``labels`` (one value per row) are
    split along with ``X`` and cast to ``labels_dtype`` (int64 cluster labels by default, or
    float64 for a numeric target); ``labels_name`` is the parameter name used in errors.
    """
    import pandas as pd

    aligned = _Aligned(sample_weight, labels, labels_dtype, labels_name)
    names: list[str] | None = None
    if is_dask_frame(X) or isinstance(X, pd.DataFrame | pd.Series):
        X, names, dtype = select_features(X, feature_names, owner)
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy(dtype=dtype)
        elif aligned.any:
            # aligning weights needs the partition lengths: one extra pass, only in this case
            X = X.to_dask_array(lengths=True)
        else:
            parts = list(X.to_delayed(optimize_graph=False))
            return PreparedInput(False, parts, None, None, None, dtype, len(names), names, True)
    if is_dask_array(X):
        return _from_dask_array(X, aligned, owner, names)
    return _from_memory(X, aligned, owner, names)


def _from_dask_array(
    X: Any, aligned: _Aligned, owner: str, names: list[str] | None
) -> PreparedInput:
    import dask.array as da

    X = check_dask_array(X, owner)
    dtype = float_dtype(X.dtype)
    row_chunks = X.chunks[0]
    known = not any(np.isnan(c) for c in row_chunks)
    X = X.rechunk({1: -1})
    target = target_block_bytes()
    if known and target is not None:
        plan = plan_sizes(int(X.shape[0]), X.shape[1] * dtype.itemsize, target)
        X = X.rechunk({0: tuple(plan)})
    parts = list(X.to_delayed(optimize_graph=False)[:, 0])

    def split(v: Any, name: str, vdtype: Any) -> list:
        if not is_dask_array(v):
            v = np.asarray(v, dtype=vdtype)
            check_vector_shape(v, X.shape[0], owner, name)
            v = da.from_array(v, chunks=(X.chunks[0],))
        else:
            check_vector_shape(v, X.shape[0], owner, name)
            v = v.astype(vdtype).rechunk((X.chunks[0],))
        return list(v.to_delayed(optimize_graph=False))

    w = aligned.sample_weight
    wparts = None if w is None else split(w, "sample_weight", float)
    lab = aligned.labels
    lparts = None if lab is None else split(lab, aligned.labels_name, aligned.labels_dtype)
    return PreparedInput(
        False,
        parts,
        wparts,
        list(X.chunks[0]) if known else None,
        tuple(row_chunks) if known else None,
        dtype,
        int(X.shape[1]),
        names,
        lazy=True,
        label_parts=lparts,
    )


def _from_memory(
    X: Any, aligned: _Aligned, owner: str, names: list[str] | None
) -> PreparedInput:
    arr = check_array(X, owner)
    dtype = float_dtype(arr.dtype)
    n, d = arr.shape
    sizes = plan_sizes(n, d * dtype.itemsize, target_block_bytes() or 1 << 62)
    bounds = np.cumsum([0, *sizes])
    parts = [arr[a:b] for a, b in itertools.pairwise(bounds)]

    def split(v: Any, name: str, vdtype: Any) -> list:
        v = np.asarray(v.compute() if hasattr(v, "compute") else v, dtype=vdtype)
        check_vector_shape(v, n, owner, name)
        return [v[a:b] for a, b in itertools.pairwise(bounds)]

    w = aligned.sample_weight
    wparts = None if w is None else split(w, "sample_weight", float)
    lab = aligned.labels
    lparts = None if lab is None else split(lab, aligned.labels_name, aligned.labels_dtype)
    return PreparedInput(True, parts, wparts, sizes, None, dtype, d, names, False, lparts)


def prepared_blocks(bs: BlockSet, sample_weight: Any, owner: str) -> PreparedInput:
    """What an estimator needs to know of a :class:`BlockSet` passed as ``X``: blocks built
    and checked by the caller (persisted or streamed), whose weights and labels, if any, are
    in the blocks (so ``sample_weight`` must be None)."""
    if sample_weight is not None:
        raise InputError(
            f"{owner}: with a BlockSet as X, the weights belong to its blocks; "
            "sample_weight must be None."
        )
    return PreparedInput(
        in_memory=False,
        parts=[],
        weight_parts=None,
        sizes=list(bs.sizes),
        row_chunks=tuple(bs.sizes),
        dtype=bs.dtype,
        n_features=bs.n_features,
        feature_names=bs.feature_names,
        lazy=True,
    )


def load_blocks(prep: PreparedInput, *, owner: str, client: Any | None = None) -> BlockSet:
    """Persist the prepared input and check it (NaN/inf per column, weights, emptiness, and
    values too large for squared distances: :func:`~kmeans_dask.validation.max_abs_limit`
    for the working dtype, the number of features and the rows or total weight)."""
    build = BlockSet.from_arrays if prep.in_memory else BlockSet.from_delayed
    bs = build(
        prep.parts,
        prep.weight_parts,
        prep.dtype,
        prep.n_features,
        label_parts=prep.label_parts,
        sizes=prep.sizes,
        client=client,
    )
    try:
        _check_summaries(bs, prep, owner)
    except Exception:
        bs.release()
        raise
    return bs


def _check_summaries(bs: BlockSet, prep: PreparedInput, owner: str) -> None:
    check_blocks(bs, prep.feature_names, owner)


def check_blocks(bs: BlockSet, feature_names: list[str] | None, owner: str) -> None:
    """Check blocks from their summaries: rows, NaN/inf per column, weights, and values too
    large for squared distances in the blocks' dtype (no pass over the data)."""
    if bs.n_samples == 0:
        raise InputError(
            f"Found array with 0 sample(s) (shape=(0, {bs.n_features})) while a minimum of "
            f"1 is required by {owner}."
        )
    total = bs.total_summary()
    err = nonfinite_error(total.n_nan, total.n_inf, feature_names, owner)
    if err is not None:
        raise err
    if bs.weighted:
        if total.n_bad_weight:
            raise InputError(
                f"{owner}: sample_weight has {total.n_bad_weight} negative or non-finite "
                "value(s); weights must be finite and >= 0."
            )
        if total.weight_sum <= 0:
            raise InputError(
                f"{owner}: sample_weight sums to 0 (all weights are zero); at least one "
                "weight must be > 0."
            )
    # the inertia and variances add up one squared distance per row, weighted
    n_rows = max(float(bs.n_samples), total.weight_sum)
    err = magnitude_error(total.max_abs, feature_names, owner, bs.dtype, n_rows)
    if err is not None:
        raise err
