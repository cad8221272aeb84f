"""Stable segment IDs across the runs of a job: find the previous committed run, match its
centroids to the new ones, and give every new cluster its ID.

The previous run is the one ``{output}/LATEST`` names when it belongs to the same job
``name`` (or the run ``continuity.previous`` pins). Its centroids are taken back to original
units with its own scaler and into the new run's scaled space with the new scaler, where they
are matched (:mod:`.segment_ids`). A forced rerun of the same run id matches against that
run's committed attempt: it is the last committed result, and the attempt being written is
not committed until the end.

The manifest's ``continuity`` section (:meth:`Continuity.manifest_section`) records the
mapping raw cluster index -> ID, the sizes, the new and vanished IDs and every ID the job has
used, so that a vanished ID is never given to another segment later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import ConfigError
from ..io import committed_uri, latest_run, read_manifest
from ..kmeans import KMeans
from ..scale import StandardScaler
from .config import RunConfig
from .prepare import Prepared
from .segment_ids import Matching, match_centres, segment_ids
from .segmentation_model import SegmentationModel, load_model

__all__ = [
    "Continuity",
    "PreviousRun",
    "check_previous",
    "find_previous",
    "original_units",
    "resolve_ids",
]

logger = logging.getLogger(__name__)


@dataclass
class PreviousRun:
    """A committed run this run follows: where its files are, its manifest and its model."""

    run_id: str
    folder: str  # URI of the committed attempt's folder (assignments/, model/, ...)
    manifest: dict[str, Any]
    model: SegmentationModel

    @property
    def ids(self) -> np.ndarray:
        """Segment ID of each of its centres (in the order of ``model.kmeans``)."""
        assert self.model.segment_ids is not None
        return self.model.segment_ids

    def sizes(self) -> dict[int, int] | None:
        """Rows per segment ID (None for a run committed before continuity existed)."""
        section = self.manifest.get("continuity") or {}
        if "ids" not in section or "sizes" not in section:
            return None
        return {int(i): int(n) for i, n in zip(section["ids"], section["sizes"], strict=True)}

    def used_ids(self) -> set[int]:
        """Every ID the job had used up to this run, its own included."""
        section = self.manifest.get("continuity") or {}
        return {int(i) for i in section.get("used_ids", [])} | {int(i) for i in self.ids}


@dataclass
class Continuity:
    """The IDs of a run's segments and how they relate to the previous run.

    ``ids[raw]`` is the segment ID of raw cluster index ``raw`` (the order of the fitted
    KMeans' centres): assignments, scores, the saved model and the profiles use it.
    """

    ids: np.ndarray
    sizes: np.ndarray  # rows per raw cluster index
    previous: PreviousRun | None
    reason: str | None  # why no previous run is matched (None when one is)
    matching: Matching = field(default_factory=Matching.empty)
    new: list[int] = field(default_factory=list)
    vanished: list[int] = field(default_factory=list)
    used_ids: list[int] = field(default_factory=list)

    def id_of(self, raw: int) -> int:
        """The segment ID of raw cluster index ``raw``."""
        return int(self.ids[raw])

    def manifest_section(self) -> dict[str, Any]:
        """The manifest's ``continuity`` entry (JSON-able)."""
        matched = {
            str(self.id_of(c)): round(float(d), 6)
            for c, d in zip(self.matching.current, self.matching.distance, strict=True)
        }
        return {
            "previous_run": None if self.previous is None else self.previous.run_id,
            "previous_uri": None if self.previous is None else self.previous.folder,
            "reason": self.reason,
            "ids": [int(i) for i in self.ids],  # raw cluster index -> segment ID
            "sizes": [int(n) for n in self.sizes],  # rows, by raw cluster index
            "match_distance": matched,  # segment ID -> distance to its previous centroid
            "new": self.new,
            "vanished": self.vanished,
            "used_ids": self.used_ids,
            "next_id": max(self.used_ids, default=-1) + 1,
        }


def original_units(model: SegmentationModel | KMeans, scaler: StandardScaler | None) -> np.ndarray:
    """The centres of ``model`` in the input's own units (float64)."""
    km = model.kmeans if isinstance(model, SegmentationModel) else model
    C = np.asarray(km.cluster_centers_, dtype=np.float64)
    return C if scaler is None else np.asarray(scaler.inverse_transform(C), dtype=np.float64)


def _scaled(X: np.ndarray, scaler: StandardScaler | None) -> np.ndarray:
    return X if scaler is None else np.asarray(scaler.transform(X), dtype=np.float64)


def _run_uri(output_uri: str, run_id: str) -> str:
    return f"{output_uri.rstrip('/')}/{run_id}"


def check_previous(config: RunConfig) -> str | None:
    """The committed folder of the pinned ``continuity.previous`` (None when none is
    pinned or matching is off); the plan stage calls it, so a wrong pin fails before any
    computing.

    Raises
    ------
    ConfigError
        ``continuity.previous`` names no committed run.
    """
    spec = config.continuity
    if not spec.match_previous or spec.previous is None:
        return None
    folder = committed_uri(spec.previous, config.output.storage_options or None)
    if folder is None:
        raise ConfigError(
            f"continuity.previous: {spec.previous} is not a committed run (no _SUCCESS); "
            "pass a run folder {output}/{run_id} of a finished run, or null to follow "
            "output.uri/LATEST"
        )
    return folder


def find_previous(config: RunConfig) -> tuple[PreviousRun | None, str | None]:
    """The run to follow, or ``(None, reason)``.

    Raises
    ------
    ConfigError
        ``continuity.previous`` names no committed run.
    StorageError
        LATEST names a run that cannot be read (never silently renumbered).
    """
    spec = config.continuity
    if not spec.match_previous:
        return None, "continuity.match_previous is false"
    options = config.output.storage_options or None
    if spec.previous is not None:
        folder = check_previous(config)
        assert folder is not None
    else:
        latest = latest_run(config.output.uri, options)
        if latest is None:
            return None, f"first run: no committed run under {config.output.uri}/LATEST"
        folder = committed_uri(_run_uri(config.output.uri, latest), options)
        if folder is None:
            return None, f"first run: LATEST names {latest}, which is not committed"
    manifest = read_manifest(folder, options)
    name = manifest.get("name")
    if spec.previous is None and name != config.name:
        return None, (
            f"first run of job {config.name!r}: LATEST names run {manifest.get('run_id')} "
            f"of job {name!r}"
        )
    model = load_model(folder, options)
    return PreviousRun(str(manifest.get("run_id")), folder, manifest, model), None


def resolve_ids(config: RunConfig, prepared: Prepared, model: KMeans) -> Continuity:
    """The segment ID of every cluster of ``model`` (the pipeline's ``continuity`` stage).

    Clusters matched (within ``continuity.max_match_distance``) to a previous centroid take
    its ID; the others take IDs never used by this job, largest first; a first run numbers
    by size, largest = 0. Sizes come from the fit's last assignment pass (no extra pass).
    """
    sizes = np.asarray(model.cluster_sizes_, dtype=np.int64)
    previous, reason = find_previous(config)
    if previous is None:
        ids = segment_ids(sizes, Matching.empty(), np.zeros(0, np.int64), 0)
        logger.info("segment IDs numbered by size (%s)", reason)
        every = sorted(int(i) for i in ids)
        return Continuity(ids, sizes, None, reason, new=every, used_ids=every)
    used = previous.used_ids()
    next_id = max(used, default=-1) + 1
    features = prepared.dataset.info.features
    if list(previous.model.feature_names) != list(features):
        matching = Matching.empty()
        reason = (
            f"previous run {previous.run_id} has features {previous.model.feature_names}, "
            f"this run {features}: no segment matched"
        )
        logger.warning("segment IDs: %s", reason)
    else:
        before = original_units(previous.model, previous.model.scaler)
        now = np.asarray(model.cluster_centers_, dtype=np.float64)
        matching = match_centres(
            _scaled(before, prepared.scaler), now, config.continuity.max_match_distance
        )
    ids = segment_ids(sizes, matching, previous.ids, next_id)
    kept = {int(i) for i in previous.ids[matching.previous]}
    new = sorted(int(i) for i in ids if int(i) not in kept)
    vanished = sorted(int(i) for i in previous.ids if int(i) not in kept)
    logger.info(
        "segment IDs follow run %s: %d kept, new %s, vanished %s",
        previous.run_id,
        len(kept),
        new,
        vanished,
    )
    return Continuity(
        ids,
        sizes,
        previous,
        reason,
        matching,
        new,
        vanished,
        sorted(used | {int(i) for i in ids}),
    )
