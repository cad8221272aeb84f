"""A segmentation model (scaler + k-means centres) and its portable form (tables and JSON).

No pickle anywhere: the model is three small documents that any tool can read: the
centres as a table, the scaler as JSON, and the metadata as JSON. ``io.model_store`` reads
and writes the documents; this module converts them to and from a model
(:func:`save_model`, :func:`load_model`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..io.commit import FileRecord, RunCommit
from ..io.model_store import load_model_documents, save_model_documents
from ..kmeans import KMeans
from ..scale import StandardScaler
from ..validation import is_dask_frame, select_features

__all__ = ["FORMAT_VERSION", "SegmentationModel", "load_model", "save_model"]

FORMAT_VERSION = 2
#: versions :meth:`SegmentationModel.from_documents` reads (1: segments numbered 0..k-1)
READABLE_VERSIONS = (1, 2)


@dataclass
class SegmentationModel:
    """Scaler and centres of a committed run; ``predict`` assigns segments to new rows.

    Parameters
    ----------
    kmeans : KMeans
        Fitted (centres in the scaled space).
    scaler : StandardScaler or None
        Applied to the features before ``kmeans``.
    feature_names : list of str
        Feature columns, in order.
    metadata : dict
        Anything else recorded with the model (run id, inertia, K and why, versions).
    segment_ids : ndarray of shape (n_clusters,), optional
        The segment ID of each centre of ``kmeans`` (its raw cluster index): what
        :meth:`predict` returns. IDs follow the previous run of the job (see
        :mod:`kmeans_dask.job.continuity`), so they need not be ``0..k-1``. Default: the raw
        indices.
    """

    kmeans: KMeans
    scaler: StandardScaler | None
    feature_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    segment_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = int(self.kmeans.cluster_centers_.shape[0])
        ids = np.arange(k) if self.segment_ids is None else self.segment_ids
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (k,) or len(np.unique(ids)) != k:
            raise ValueError(
                f"segment_ids: must be {k} distinct integers (one per centre); got {ids.tolist()}"
            )
        self.segment_ids = ids

    def _features(self, X: Any) -> Any:
        if hasattr(X, "columns"):
            X, _, dtype = select_features(X, self.feature_names, "SegmentationModel")
            # positional from here on: the scaler and the centres share the feature order
            if is_dask_frame(X):
                return X.to_dask_array(lengths=True)
            return X.to_numpy(dtype=dtype)
        return X

    def transform_features(self, X: Any) -> Any:
        """Select the features and apply the scaler (the space the centres live in)."""
        X = self._features(X)
        return X if self.scaler is None else self.scaler.transform(X)

    def predict(self, X: Any) -> Any:
        """Segment ID of each row (numpy for in-memory input, dask array for dask input)."""
        raw = self.kmeans.predict(self.transform_features(X))
        ids = self.segment_ids.astype(np.int32)
        if hasattr(raw, "map_blocks"):
            return raw.map_blocks(_take, ids, dtype=np.int32)
        return ids[raw]

    def distances(self, X: Any) -> Any:
        """Euclidean distance of each row to every centre (scaled space); column ``j`` is
        the centre of segment ``segment_ids[j]``."""
        return self.kmeans.transform(self.transform_features(X))

    # ------------------------------------------------------------------ portable form
    def to_documents(self) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
        """``(centroids table, scaler document, model document)``."""
        C = self.kmeans.cluster_centers_
        centroids = pd.DataFrame(C.astype(np.float64), columns=self.feature_names)
        centroids.insert(0, "segment", self.segment_ids.astype(np.int32))
        if self.scaler is None:
            scaler_doc: dict[str, Any] = {"kind": "none", "feature_names": self.feature_names}
        else:
            sc = self.scaler
            scaler_doc = {
                "kind": "standard",
                "feature_names": self.feature_names,
                "mean": None if sc.mean_ is None else sc.mean_.tolist(),
                "scale": None if sc.scale_ is None else sc.scale_.tolist(),
                "var": None if sc.var_ is None else sc.var_.tolist(),
                "n_samples_seen": int(sc.n_samples_seen_),
            }
        km = self.kmeans
        params = {k: v for k, v in km.get_params().items() if k != "init"}
        params["init"] = km.init if isinstance(km.init, str) else "array"
        model_doc = {
            "format_version": FORMAT_VERSION,
            "algorithm": "kmeans",
            "n_clusters": int(C.shape[0]),
            "feature_names": self.feature_names,
            "dtype": str(C.dtype),
            "reference": np.asarray(km.reference_, dtype=np.float64).tolist(),
            "inertia": float(getattr(km, "inertia_", float("nan"))),
            "n_iter": int(getattr(km, "n_iter_", 0)),
            "params": params,
            "metadata": self.metadata,
        }
        return centroids, scaler_doc, model_doc

    @classmethod
    def from_documents(
        cls, centroids: pd.DataFrame, scaler_doc: dict[str, Any], model_doc: dict[str, Any]
    ) -> SegmentationModel:
        """Rebuild a model from :meth:`to_documents` output."""
        version = model_doc.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"model format_version {version!r} is not supported (expected one of "
                f"{list(READABLE_VERSIONS)})"
            )
        names = list(model_doc["feature_names"])
        # the centres in segment-ID order: raw index j of the reloaded model is the j-th ID
        table = centroids.sort_values("segment")
        C = table[names].to_numpy(dtype=np.dtype(model_doc.get("dtype", "float64")))
        params = {
            k: v for k, v in model_doc.get("params", {}).items() if k not in ("n_clusters", "init")
        }
        km = KMeans.from_centers(C, reference=model_doc.get("reference"), **params)
        km.inertia_ = model_doc.get("inertia")
        km.n_iter_ = model_doc.get("n_iter")
        scaler = None
        if scaler_doc.get("kind") == "standard":
            scaler = StandardScaler.from_stats(
                scaler_doc.get("mean"),
                scaler_doc.get("scale"),
                var=scaler_doc.get("var"),
                n_samples_seen=scaler_doc.get("n_samples_seen", 0),
            )
        ids = table["segment"].to_numpy(dtype=np.int64)
        return cls(km, scaler, names, dict(model_doc.get("metadata", {})), ids)


def _take(raw: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return ids[raw]


def save_model(run: RunCommit, model: SegmentationModel) -> list[FileRecord]:
    """Write a run's model files: ``model/centroids.parquet``, ``scaler.json``, ``model.json``."""
    return save_model_documents(run, *model.to_documents())


def load_model(run_uri: str, storage_options: Mapping[str, Any] | None = None) -> SegmentationModel:
    """Reload the model of a committed run (``{output}/{run_id}``).

    Raises
    ------
    StorageError
        The run is not committed (no ``_SUCCESS``) or a model file is missing.
    """
    return SegmentationModel.from_documents(*load_model_documents(run_uri, storage_options))
