"""Input preparation: split a validated input into row parts and persist them as blocks.

Type, shape and dtype checks come from :mod:`kmeans_dask.validation`; this module plans the
row parts (no pass over the data) and, in :func:`load_blocks`, persists them and checks what
only a pass can tell (NaN/inf per column, weights, emptiness).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import InputError
from ..validation import _column_label, _is_dask_array, _is_dask_frame, _resolve_dtype, check_array
from .blocks import BlockSet, get_client, plan_sizes, target_block_bytes

__all__ = ["PreparedInput", "load_blocks", "prepare_input"]


@dataclass
class PreparedInput:
    """Input split into row parts, ready to persist as blocks."""

    kind: str  # "numpy" (in-memory parts) or "delayed"
    parts: list
    weight_parts: list | None
    sizes: list[int] | None  # rows per part when known
    row_chunks: tuple | None  # the caller's own row chunking (to align outputs)
    dtype: np.dtype
    n_features: int
    feature_names: list[str] | None
    lazy: bool  # the caller passed a dask collection
    label_parts: list | None = None  # cluster labels aligned with the parts (metrics)


def prepare_input(
    X: Any,
    sample_weight: Any = None,
    *,
    owner: str,
    feature_names: list[str] | None = None,
    n_threads: int | None = None,
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
    import dask.array as da
    import pandas as pd

    if n_threads is None:
        client = get_client()
        n_threads = sum(client.nthreads().values()) if client is not None else 1
    target = target_block_bytes()
    names: list[str] | None = None

    if _is_dask_frame(X) or isinstance(X, pd.DataFrame | pd.Series):
        if isinstance(X, pd.Series) or (_is_dask_frame(X) and X.ndim == 1):
            X = X.to_frame()
        cols = [str(c) for c in X.columns]
        if feature_names is not None:
            missing = [c for c in feature_names if c not in cols]
            if missing:
                raise InputError(
                    f"{owner}: X has no column(s) {missing}; it was fitted on columns "
                    f"{list(feature_names)}."
                )
            X = X[list(feature_names)]
            cols = list(feature_names)
        dtype = _resolve_dtype(list(X.dtypes), [repr(c) for c in cols], owner)
        names = cols
        if isinstance(X, pd.DataFrame):
            X = X.to_numpy(dtype=dtype)
        elif sample_weight is not None or labels is not None:
            # aligning weights needs the partition lengths: one extra pass, only in this case
            X = X.to_dask_array(lengths=True)
        else:
            parts = list(X.to_delayed(optimize_graph=False))
            return PreparedInput(
                "delayed", parts, None, None, None, dtype, len(cols), names, lazy=True
            )

    if _is_dask_array(X):
        if X.ndim != 2:
            raise InputError(f"{owner}: expected a 2-D array, got {X.ndim}-D with shape {X.shape}.")
        if X.dtype.kind not in "biuf":
            raise InputError(f"{owner}: X has dtype {X.dtype}, which is not numeric.")
        dtype = np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)
        if feature_names is None and names is None and X.shape[1] == 0:
            raise InputError(f"{owner}: X has 0 features; at least 1 is required.")
        row_chunks = X.chunks[0]
        known = not any(np.isnan(c) for c in row_chunks)
        X = X.rechunk({1: -1})
        if known and target is not None:
            plan = plan_sizes(int(X.shape[0]), X.shape[1] * dtype.itemsize, n_threads, target)
            X = X.rechunk({0: tuple(plan)})
        parts = list(X.to_delayed(optimize_graph=False)[:, 0])

        def aligned(v: Any, name: str, dtype: Any) -> list:
            if not _is_dask_array(v):
                v = np.asarray(v, dtype=dtype)
                _check_weight_shape(v, X.shape[0], owner, name)
                v = da.from_array(v, chunks=(X.chunks[0],))
            else:
                _check_weight_shape(v, X.shape[0], owner, name)
                v = v.astype(dtype).rechunk((X.chunks[0],))
            return list(v.to_delayed(optimize_graph=False))

        wparts = None if sample_weight is None else aligned(sample_weight, "sample_weight", float)
        lparts = None if labels is None else aligned(labels, labels_name, labels_dtype)
        sizes = list(X.chunks[0]) if known else None
        return PreparedInput(
            "delayed",
            parts,
            wparts,
            sizes,
            tuple(row_chunks) if known else None,
            dtype,
            int(X.shape[1]),
            names,
            lazy=True,
            label_parts=lparts,
        )

    arr = check_array(X, owner)
    dtype = np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)
    n, d = arr.shape
    sizes = plan_sizes(n, d * dtype.itemsize, n_threads, target or 1 << 62)
    bounds = np.cumsum([0, *sizes])
    parts = [arr[a:b] for a, b in itertools.pairwise(bounds)]

    def split(v: Any, name: str, dtype: Any) -> list:
        v = np.asarray(v.compute() if hasattr(v, "compute") else v, dtype=dtype)
        _check_weight_shape(v, n, owner, name)
        return [v[a:b] for a, b in itertools.pairwise(bounds)]

    wparts = None if sample_weight is None else split(sample_weight, "sample_weight", float)
    lparts = None if labels is None else split(labels, labels_name, labels_dtype)
    return PreparedInput(
        "numpy", parts, wparts, sizes, None, dtype, d, names, lazy=False, label_parts=lparts
    )


def _check_weight_shape(w: Any, n: Any, owner: str, name: str = "sample_weight") -> None:
    if w.ndim != 1 or (not np.isnan(w.shape[0]) and not np.isnan(n) and w.shape[0] != n):
        raise InputError(
            f"{owner}: {name} must be 1-D with one value per row of X "
            f"({n} rows); got shape {w.shape}."
        )


def load_blocks(prep: PreparedInput, *, owner: str, client: Any | None = None) -> BlockSet:
    """Persist the prepared input and check it (NaN/inf per column, weights, emptiness)."""
    bs = BlockSet.from_parts(
        prep.parts,
        prep.weight_parts,
        prep.dtype,
        prep.n_features,
        prep.kind,
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
    if bs.n_samples == 0:
        raise InputError(
            f"Found array with 0 sample(s) (shape=(0, {prep.n_features})) while a minimum of "
            f"1 is required by {owner}."
        )
    n_nan = sum(s.n_nan for s in bs.summaries)
    n_inf = sum(s.n_inf for s in bs.summaries)
    for what, counts in (("NaN", n_nan), ("infinity", n_inf)):
        bad = np.flatnonzero(counts)
        if bad.size:
            cols = ", ".join(
                f"{_column_label(prep.feature_names, j)} ({int(counts[j])} values)" for j in bad[:5]
            )
            more = f" and {bad.size - 5} more" if bad.size > 5 else ""
            raise InputError(
                f"Input X contains {what} in column {cols}{more}; {owner} needs finite values. "
                "Drop or impute those rows first."
            )
    if bs.weighted:
        n_bad = sum(s.n_bad_weight for s in bs.summaries)
        if n_bad:
            raise InputError(
                f"{owner}: sample_weight has {n_bad} negative or non-finite value(s); "
                "weights must be finite and >= 0."
            )
        if sum(s.weight_sum for s in bs.summaries) <= 0:
            raise InputError(f"{owner}: sample_weight sums to 0; at least one weight must be > 0.")
