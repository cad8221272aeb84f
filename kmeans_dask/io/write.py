"""Parquet writers: partition by partition on the workers (nothing is gathered), a Hive-
partitioned data set, or one small table."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..progress import ProgressTask
from .commit import FileRecord, RunCommit
from .fs import filesystem, join, put_parquet

__all__ = [
    "record_files",
    "write_frame",
    "write_frames",
    "write_hive_parquet",
    "write_parquet",
]


def write_frame(df: pd.DataFrame, fs: Any, path: str, rel: str) -> FileRecord:
    """Write one frame as a Parquet file at ``path`` (runs on a worker); its record."""
    return FileRecord(rel, put_parquet(fs, path, df), len(df))


_write_part = write_frame


def record_files(run: RunCommit, records: list[FileRecord], folder: str) -> None:
    """Register files written under ``folder`` by the workers with ``run`` (manifest)."""
    run.add_records(records)
    run.fs.invalidate_cache(run.path(folder))


def write_frames(
    parts: list, run: RunCommit, folder: str, progress: ProgressTask | None = None
) -> list[FileRecord]:
    """Write delayed pandas frames (one per partition) as ``{folder}/part-NNNNN.parquet``.

    Each partition is written by the worker that computes it, straight to the run folder;
    only the file records (path, size, rows) come back. The records are registered with
    ``run`` for the manifest. ``progress`` is advanced by one per partition written.
    """
    import dask

    task = dask.delayed(_write_part, pure=False)
    tasks = []
    for i, part in enumerate(parts):
        rel = f"{folder}/part-{i:05d}.parquet"
        tasks.append(task(part, run.fs, run.path(rel), rel))
    records = compute_all(tasks, progress)
    run.add_records(records)
    run.fs.invalidate_cache(run.path(folder))
    return records


def compute_all(tasks: list, progress: ProgressTask | None = None) -> list:
    """Compute delayed writes; when one fails, wait for every other one to finish before
    raising, so that the caller's cleanup never races a write still in flight (which would
    leave a half-written folder behind)."""
    import dask

    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is not None:
        futures = client.compute(tasks)
        if progress is not None:
            for f in futures:
                f.add_done_callback(lambda _future: progress.advance())
        try:
            return client.gather(futures)
        except Exception:
            client.gather(futures, errors="skip")  # returns once all are done
            raise
    if dask.config.get("scheduler", None) in ("sync", "synchronous"):
        out = list(dask.compute(*tasks))
    else:
        from concurrent.futures import ThreadPoolExecutor

        # the with block waits for the running tasks when one has failed
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            out = list(dask.compute(*tasks, scheduler="threads", pool=pool))
    if progress is not None:
        progress.advance(len(out))
    return out


def write_parquet(
    df: pd.DataFrame, uri: str, storage_options: Mapping[str, Any] | None = None
) -> int:
    """Write a small pandas frame as one Parquet file (no index); returns its size."""
    fs, path = filesystem(uri, storage_options)
    return put_parquet(fs, path, df, make_parent=True)


def write_hive_parquet(
    df: pd.DataFrame,
    folder_uri: str,
    partition_column: str,
    parts_per_value: int = 1,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write ``df`` as Hive-partitioned Parquet, the layout :func:`~.read.open_dataset` reads:
    ``{folder}/{column}={value}/part-NNN.parquet``, ``parts_per_value`` files of consecutive
    rows per value (sorted), without the partition column in the files. Returns the paths.
    """
    fs, root = filesystem(folder_uri, storage_options)
    key = urllib.parse.quote(partition_column, safe="")
    written = []
    for value, sub in df.groupby(partition_column, sort=True):
        folder = join(root, f"{key}={urllib.parse.quote(str(value), safe='')}")
        sub = sub.drop(columns=partition_column)
        bounds = np.linspace(0, len(sub), parts_per_value + 1).astype(int)
        for i in range(parts_per_value):
            path = join(folder, f"part-{i:03d}.parquet")
            put_parquet(fs, path, sub.iloc[bounds[i] : bounds[i + 1]], make_parent=True)
            written.append(path)
    return written
