"""The job's result tables, computed and written partition by partition on the workers:
``assignments/`` (one file per input partition) and ``scores/`` (one per query partition)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import progress
from ..engine.lloyd import assign_blocks
from ..engine.outputs import assign_and_write, read_column
from ..io import RunCommit, open_dataset
from ..io.write import record_files, write_frame, write_frames
from ..kmeans import KMeans
from .config import RunConfig
from .prepare import Prepared

__all__ = ["score_queries", "write_assignments"]


def write_assignments(run: RunCommit, prepared: Prepared, model: KMeans) -> list[Any]:
    """``assignments/part-*.parquet``: id, segment, distance_to_centroid, one file per input
    partition, computed and written on the workers from the standardised blocks (persisted,
    or read again when streamed); ids are read from storage with each partition."""
    ds = prepared.dataset
    bs = prepared.blocks
    id_col = ds.info.id_column
    rels, first = [], 0
    for r in prepared.recipes:
        rels.append([f"assignments/part-{first + i:05d}.parquet" for i in range(len(r.units))])
        first += len(r.units)
    with progress.task("assign: blocks", total=bs.n_blocks) as bar:
        handles = bs.map_keep(
            assign_and_write,
            [r.units for r in prepared.recipes],
            bs.offsets,
            [[run.path(rel) for rel in block_rels] for block_rels in rels],
            rels,
            write=write_frame,
            fs=run.fs,
            C=model.cluster_centers_,
            ref=model.reference_,
            ids=None if id_col is None else ds.column_reader(id_col),
            id_name=id_col or "row",
        )
        per_block = bs.gather(handles, bar)
    records = [rec for block_records in per_block for rec in block_records]
    record_files(run, records, "assignments")
    return records


def _reference_labels(config: RunConfig, prepared: Prepared, model: KMeans) -> list:
    """Per-block labels of the reference rows (left on the workers): the segments, or the
    target column read with each block's units."""
    bs = prepared.blocks
    knn = config.knn
    if knn.target == "segment":
        labels, _ = assign_blocks(bs, model.cluster_centers_, model.reference_)
        return labels
    reader = prepared.dataset.column_reader(knn.target)
    dtype = np.float64 if knn.task == "regress" else None
    return bs.map_values(
        read_column, [r.units for r in prepared.recipes], reader=reader, dtype=dtype
    )


def score_queries(
    config: RunConfig, run: RunCommit, prepared: Prepared, model: KMeans
) -> list[Any]:
    """``scores/part-*.parquet`` for the query rows (KNN against the segmented rows)."""
    from ..knn import KNeighborsScorer, fit_on_blocks

    knn = config.knn
    q = knn.query
    features = prepared.dataset.info.features
    qds = open_dataset(q.uri, q.format, features, q.id_column, q.storage_options or None, q.filters)
    Xq = qds.to_dask_array(dtype=np.dtype(config.kmeans.dtype))
    Xq_scaled = prepared.scaler.transform(Xq) if prepared.scaler is not None else Xq
    scorer = KNeighborsScorer(n_neighbors=knn.n_neighbors, weights=knn.weights, task=knn.task)
    fit_on_blocks(scorer, prepared.blocks, _reference_labels(config, prepared, model))
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
    with progress.task("score: query partitions", total=len(parts)) as bar:
        return write_frames(parts, run, "scores", progress=bar)


def _with_nearest(frame: pd.DataFrame, nearest: np.ndarray) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["nearest_centroid"] = np.asarray(nearest, dtype=np.int32)
    return frame
