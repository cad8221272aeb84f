"""Partition-by-partition writers that run on the workers (nothing is gathered)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .commit import FileRecord, RunCommit
from .fs import put_parquet

__all__ = ["write_frames"]


def _write_part(df: pd.DataFrame, fs: Any, path: str, rel: str) -> FileRecord:
    return FileRecord(rel, put_parquet(fs, path, df), len(df))


def write_frames(parts: list, run: RunCommit, folder: str) -> list[FileRecord]:
    """Write delayed pandas frames (one per partition) as ``{folder}/part-NNNNN.parquet``.

    Each partition is written by the worker that computes it, straight to the run folder;
    only the file records (path, size, rows) come back. The records are registered with
    ``run`` for the manifest.
    """
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
