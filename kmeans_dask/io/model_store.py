"""Save and load a :class:`~kmeans_dask.model.SegmentationModel` as Parquet + JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..exceptions import StorageError
from ..job.segmentation_model import SegmentationModel
from .commit import SUCCESS, FileRecord, RunCommit
from .fs import filesystem, join, to_uri

__all__ = ["load_model", "save_model"]

CENTROIDS = "model/centroids.parquet"
SCALER = "model/scaler.json"
MODEL = "model/model.json"


def save_model(run: RunCommit, model: SegmentationModel) -> list[FileRecord]:
    """Write a run's model files: ``model/centroids.parquet``, ``scaler.json``, ``model.json``."""
    centroids, scaler_doc, model_doc = model.to_documents()
    return [
        run.write_table(CENTROIDS, centroids),
        run.write_json(SCALER, scaler_doc),
        run.write_json(MODEL, model_doc),
    ]


def load_model(run_uri: str, storage_options: Mapping[str, Any] | None = None) -> SegmentationModel:
    """Reload the model of a committed run (``{output}/{run_id}``).

    Raises
    ------
    StorageError
        The run is not committed (no ``_SUCCESS``) or a model file is missing.
    """
    fs, root = filesystem(run_uri, storage_options)
    fs.invalidate_cache(root)
    if not fs.exists(join(root, SUCCESS)):
        raise StorageError(
            f"{to_uri(fs, root)} is not a committed run (no {SUCCESS}); pass the run folder "
            "{output}/{run_id} of a finished run"
        )
    try:
        centroids = pd.read_parquet(io.BytesIO(fs.cat_file(join(root, CENTROIDS))))
        scaler_doc = json.loads(fs.cat_file(join(root, SCALER)))
        model_doc = json.loads(fs.cat_file(join(root, MODEL)))
    except FileNotFoundError as exc:
        raise StorageError(f"model file missing in {to_uri(fs, root)}: {exc}") from exc
    return SegmentationModel.from_documents(centroids, scaler_doc, model_doc)
