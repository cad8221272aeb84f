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
        The run is not committed (no ``_SUCCESS``) or a model file is missing.
    """
    fs, path = filesystem(run_uri, storage_options)
    root = committed_folder(fs, path)
    if root is None:
        raise StorageError(
            f"{to_uri(fs, path)} is not a committed run (no {SUCCESS}); pass the run folder "
            "{output}/{run_id} of a finished run"
        )
    try:
        centroids = pd.read_parquet(io.BytesIO(fs.cat_file(join(root, CENTROIDS))))
        scaler_doc = json.loads(fs.cat_file(join(root, SCALER)))
        model_doc = json.loads(fs.cat_file(join(root, MODEL)))
    except FileNotFoundError as exc:
        raise StorageError(f"model file missing in {to_uri(fs, root)}: {exc}") from exc
    return centroids, scaler_doc, model_doc
