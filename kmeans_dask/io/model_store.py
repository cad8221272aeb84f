"""A run's model documents: ``model/centroids.parquet``, ``model/scaler.json``,
``model/model.json``.

Storage only: this module reads and writes the three documents and knows no estimator;
``kmeans_dask.job.segmentation_model`` converts them to and from a model.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..exceptions import StorageError
from .commit import FileRecord, RunCommit
from .errors import storage_errors
from .fs import filesystem, join, to_uri
from .runs import SUCCESS, committed_folder

__all__ = ["load_model_documents", "save_model_documents"]

CENTROIDS = "model/centroids.parquet"
SCALER = "model/scaler.json"
MODEL = "model/model.json"


def save_model_documents(
    run: RunCommit,
    centroids: pd.DataFrame,
    scaler_doc: Mapping[str, Any],
    model_doc: Mapping[str, Any],
) -> list[FileRecord]:
    """Write a run's model files: ``model/centroids.parquet``, ``scaler.json``, ``model.json``."""
    return [
        run.write_table(CENTROIDS, centroids),
        run.write_json(SCALER, scaler_doc),
        run.write_json(MODEL, model_doc),
    ]


def load_model_documents(
    run_uri: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """The model documents of a committed run: ``run_uri`` is the run folder
    ``{output}/{run_id}`` (its commit pointer is followed) or a committed attempt folder.
    Returns ``(centroids table, scaler document, model document)``.

    Raises
    ------
    StorageError
        The run is not committed (no ``_SUCCESS``), a model file is missing, or the store
        refused or failed a read (naming the operation, the file and the bucket).
    """
    fs, path = filesystem(run_uri, storage_options)
    root = committed_folder(fs, path)
    if root is None:
        raise StorageError(
            f"{to_uri(fs, path)} is not a committed run (no {SUCCESS}); pass the run folder "
            "{output}/{run_id} of a finished run"
        )
    docs = [_read(fs, join(root, rel)) for rel in (CENTROIDS, SCALER, MODEL)]
    centroids = pd.read_parquet(io.BytesIO(docs[0]))
    return centroids, json.loads(docs[1]), json.loads(docs[2])


def _read(fs, path: str) -> bytes:
    uri = to_uri(fs, path)
    with storage_errors("reading", uri):
        try:
            return fs.cat_file(path)
        except FileNotFoundError as exc:
            raise StorageError(f"model file missing: {uri} (the run folder is incomplete)") from exc
