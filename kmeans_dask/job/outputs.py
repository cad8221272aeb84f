"""The job's result tables, computed and written partition by partition on the workers:
``assignments/`` (one file per input partition, with the segment profiles' partials made in
the same pass) and ``scores/`` (one per query partition)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import progress
from ..engine.lloyd import assign_blocks
from ..engine.outputs import assign_and_write, read_column
from ..engine.profile import binning_for, reduce_partials
from ..io import RunCommit, open_dataset
from ..io.write import record_files, write_frame, write_frames
from ..kernels.profile import Binning, ProfilePartial
from ..kmeans import KMeans
from .config import RunConfig
from .prepare import Prepared

__all__ = ["Assigned", "score_queries", "write_assignments"]


@dataclass
class Assigned:
    """What the assignment pass returns: the files written and the segments' profile
    (all blocks' partials merged, by raw cluster index) with the binning it was made with."""

    records: list[Any]
    profile: ProfilePartial
    binning: Binning


def write_assignments(
    run: RunCommit, prepared: Prepared, model: KMeans, segment_ids: np.ndarray | None = None
) -> Assigned:
    """``assignments/part-*.parquet``: id, segment, distance_to_centroid, one file per input
    partition, computed and written on the workers from the standardised blocks (persisted,
    or read again when streamed); ids are read from storage with each partition.
    ``segment_ids[raw]`` is the ID written for raw cluster index ``raw`` (see
    :mod:`.continuity`; None: the raw index). The same tasks return each block's profile
    partial (original units, by raw cluster index), merged on the workers."""
    ds = prepared.dataset
    bs = prepared.blocks
    sc = prepared.scaler
    binning = binning_for(
        bs,
        None if sc is None else sc.mean_,
        None if sc is None else sc.scale_,
        len(model.cluster_centers_),
    )
    id_col = ds.info.id_column
    rels, first = [], 0
    for r in prepared.recipes:
        rels.append([f"assignments/part-{first + i:05d}.parquet" for i in range(len(r.units))])
        first += len(r.units)
    with progress.task("assign: blocks", total=bs.n_blocks) as bar:
        per_block = bs.map_keep(
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
            binning=binning,
            segment_ids=segment_ids,
        )
        try:
            written = bs.gather(bs.map_values(operator.itemgetter(0), per_block), bar)
            profile = reduce_partials(bs, per_block, index=1)
        finally:
            bs.release(per_block)
    records = [rec for block_records in written for rec in block_records]
    record_files(run, records, "assignments")
    return Assigned(records, profile, binning)


def _reference_labels(
    config: RunConfig, prepared: Prepared, model: KMeans, segment_ids: np.ndarray | None
) -> list:
    """Per-block labels of the reference rows (left on the workers): the segment IDs, or the
    target column read with each block's units."""
    bs = prepared.blocks
    knn = config.knn
    if knn.target == "segment":
        labels, _ = assign_blocks(bs, model.cluster_centers_, model.reference_)
        if segment_ids is None:
            return labels
        ids = np.asarray(segment_ids, dtype=np.int32)
        mapped = bs.map_values(_take, labels, ids=ids)
        bs.release(labels)
        return mapped
    reader = prepared.dataset.column_reader(knn.target)
    dtype = np.float64 if knn.task == "regress" else None
    return bs.map_values(
        read_column, [r.units for r in prepared.recipes], reader=reader, dtype=dtype
    )


def score_queries(
    config: RunConfig,
    run: RunCommit,
    prepared: Prepared,
    model: KMeans,
    segment_ids: np.ndarray | None = None,
) -> list[Any]:
    """``scores/part-*.parquet`` for the query rows (KNN against the segmented rows);
    ``nearest_centroid`` (and ``knn_label`` with ``knn.target: segment``) are segment IDs,
    ``segment_ids[raw]`` for raw cluster index ``raw``."""
    from ..knn import KNeighborsScorer, fit_on_blocks

    knn = config.knn
    q = knn.query
    features = prepared.dataset.info.features
    qds = open_dataset(q.uri, q.format, features, q.id_column, q.storage_options or None, q.filters)
    Xq = qds.to_dask_array(dtype=np.dtype(config.kmeans.dtype))
    Xq_scaled = prepared.scaler.transform(Xq) if prepared.scaler is not None else Xq
    scorer = KNeighborsScorer(
        n_neighbors=knn.n_neighbors, weights=knn.weights, task=knn.task, algorithm=knn.algorithm
    )
    fit_on_blocks(scorer, prepared.blocks, _reference_labels(config, prepared, model, segment_ids))
    id_name = q.id_column or "row"
    # ids as a dask Series (keeps string ids); None: the query row positions
    ids = qds.frame[q.id_column] if q.id_column is not None else None
    frame = scorer.score_frame(Xq_scaled, ids, id_column=id_name)
    nearest = model.predict(Xq_scaled)
    if segment_ids is not None:
        nearest = nearest.map_blocks(_take, ids=np.asarray(segment_ids), dtype=np.int32)
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


def _take(raw: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return ids[raw]


def _with_nearest(frame: pd.DataFrame, nearest: np.ndarray) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["nearest_centroid"] = np.asarray(nearest, dtype=np.int32)
    return frame
