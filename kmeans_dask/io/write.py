"""Partition-by-partition writers that run on the workers (nothing is gathered)."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from ..exceptions import StorageError
from .commit import FileRecord, RunCommit
from .fs import to_uri

__all__ = ["write_frames", "write_partitions"]


def _write_part(df: pd.DataFrame, fs: Any, path: str, rel: str) -> FileRecord:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    data = buf.getvalue()
    try:
        fs.pipe_file(path, data)
    except Exception as exc:
        raise StorageError(f"cannot write {to_uri(fs, path)}: {exc}") from exc
    return FileRecord(rel, len(data), len(df))


def write_partitions(frame: Any, run: RunCommit, folder: str) -> list[FileRecord]:
    """Write every partition of a dask DataFrame as ``{folder}/part-NNNNN.parquet``.

    Each partition is written by the worker that computes it, straight to the run folder;
    only the file records (path, size, rows) come back. The records are registered with
    ``run`` for the manifest.
    """
    return write_frames(list(frame.to_delayed(optimize_graph=True)), run, folder)


def write_frames(parts: list, run: RunCommit, folder: str) -> list[FileRecord]:
    """Write delayed pandas frames (one per partition) as ``{folder}/part-NNNNN.parquet``,
    each on the worker that computes it; see :func:`write_partitions`."""
    import dask

    run.fs.makedirs(run.path(folder), exist_ok=True)
    task = dask.delayed(_write_part, pure=False)
    tasks = []
    for i, part in enumerate(parts):
        rel = f"{folder}/part-{i:05d}.parquet"
        tasks.append(task(part, run.fs, run.path(rel), rel))
    records = list(dask.compute(*tasks))
    run.add_records(records)
    run.fs.invalidate_cache(run.path(folder))
    return records
