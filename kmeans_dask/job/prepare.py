"""The read stage: open and validate the input, persist its features once, fit the scaler.

Its result, :class:`Prepared`, is what the later stages (sweep, fit, assign, score) share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io import Dataset, open_dataset
from ..scale import StandardScaler
from .config import RunConfig

__all__ = ["Prepared", "read_and_scale"]


@dataclass
class Prepared:
    """Input read, features persisted and scaled."""

    dataset: Dataset
    X: Any  # persisted raw features (dask array, one chunk per input partition)
    X_scaled: Any
    scaler: StandardScaler | None


def read_and_scale(config: RunConfig) -> Prepared:
    """Open and validate the input, persist its features once, fit the scaler."""
    spec = config.input
    ds = open_dataset(
        spec.uri,
        spec.format,
        spec.columns,
        spec.id_column,
        spec.storage_options or None,
        spec.filters,
    )
    X = ds.to_dask_array(dtype=np.dtype(config.kmeans.dtype)).persist()
    scaler = None
    X_scaled = X
    if config.scaling == "standard":
        scaler = StandardScaler().fit(X)
        X_scaled = scaler.transform(X)
    return Prepared(ds, X, X_scaled, scaler)
