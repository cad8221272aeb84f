"""The job's result tables, computed and written partition by partition on the workers:
``assignments/`` (one file per input partition) and ``scores/`` (one per query partition)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..io import Dataset, RunCommit, open_dataset
from ..io.write import write_frames
from ..kernels.assignment import assign_rows
from ..kmeans import KMeans
from ..scale import StandardScaler
from .config import RunConfig
from .prepare import Prepared

__all__ = ["score_queries", "write_assignments"]


def _assign_part(
    X: np.ndarray,
    ids: Any,
    offset: int,
    C: np.ndarray,
    ref: np.ndarray,
    scaler: StandardScaler | None,
    id_name: str,
) -> pd.DataFrame:
    Xs = X if scaler is None else scaler.transform(X)
    seg, d2 = assign_rows(Xs, C, ref)
    ident = np.arange(offset, offset + X.shape[0]) if ids is None else np.asarray(ids)
    return pd.DataFrame(
        {id_name: ident, "segment": seg.astype(np.int32), "distance_to_centroid": np.sqrt(d2)}
    )


def _partition_ids(ds: Dataset) -> list:
    """The id column of each partition (delayed), or None per partition without one."""
    if ds.info.id_column is None:
        return [None] * ds.frame.npartitions
    return list(ds.frame[ds.info.id_column].to_delayed(optimize_graph=False))


def write_assignments(run: RunCommit, prepared: Prepared, model: KMeans) -> list[Any]:
    """``assignments/part-*.parquet``: id, segment, distance_to_centroid, one file per
    input partition, computed and written on the workers."""
    import dask

    ds = prepared.dataset
    id_name = ds.info.id_column or "row"
    blocks = prepared.X.to_delayed(optimize_graph=False)[:, 0]
    offsets = np.cumsum([0, *prepared.X.chunks[0]])[:-1]
    task = dask.delayed(_assign_part, pure=True)
    parts = [
        task(b, ids, int(off), model.cluster_centers_, model.reference_, prepared.scaler, id_name)
        for b, ids, off in zip(blocks, _partition_ids(ds), offsets, strict=True)
    ]
    return write_frames(parts, run, "assignments")


def score_queries(
    config: RunConfig, run: RunCommit, prepared: Prepared, model: KMeans
) -> list[Any]:
    """``scores/part-*.parquet`` for the query rows (KNN against the segmented rows)."""
    from ..knn import KNeighborsScorer

    knn = config.knn
    q = knn.query
    features = prepared.dataset.info.features
    qds = open_dataset(q.uri, q.format, features, q.id_column, q.storage_options or None, q.filters)
    Xq = qds.to_dask_array(dtype=np.dtype(config.kmeans.dtype))
    Xq_scaled = prepared.scaler.transform(Xq) if prepared.scaler is not None else Xq
    if knn.target == "segment":
        y = model.predict(prepared.X_scaled)
    else:
        spec = config.input
        tds = open_dataset(
            spec.uri, spec.format, [knn.target], None, spec.storage_options or None, spec.filters
        )
        y = tds.to_dask_array()[:, 0]
        y = y.rechunk((prepared.X.chunks[0],))
    scorer = KNeighborsScorer(n_neighbors=knn.n_neighbors, weights=knn.weights, task=knn.task)
    scorer.fit(prepared.X_scaled, y)
    id_name = q.id_column or "row"
    # ids as a dask Series (keeps string ids); None: the query row positions
    ids = qds.frame[q.id_column] if q.id_column is not None else None
    frame = scorer.score_frame(Xq_scaled, ids, id_column=id_name)
    nearest = model.predict(Xq_scaled)
    import dask

    # score partitions follow the query chunks: add the nearest centroid block by block
    parts = [
        dask.delayed(_with_nearest, pure=True)(f, n)
        for f, n in zip(
            frame.to_delayed(optimize_graph=False),
            nearest.to_delayed(optimize_graph=False),
            strict=True,
        )
    ]
    return write_frames(parts, run, "scores")


def _with_nearest(frame: pd.DataFrame, nearest: np.ndarray) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["nearest_centroid"] = np.asarray(nearest, dtype=np.int32)
    return frame
