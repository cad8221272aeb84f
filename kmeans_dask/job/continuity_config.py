"""The ``continuity:`` section of the run config: segment IDs across runs and the drift
report (see :mod:`kmeans_dask.job.continuity` and :mod:`kmeans_dask.job.drift`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..io.fs import location

__all__ = ["ContinuitySpec"]


class ContinuitySpec(BaseModel):
    """Segment identity across scheduled runs and the drift report (``drift.json``).

    Not part of the run id: a rerun of the same config on the same data is the same
    clustering and is skipped; ``--force`` renumbers it under changed settings.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    match_previous: bool = Field(
        True,
        description="Match the segments to the previous committed run of the same job name "
        "(output.uri/LATEST, or continuity.previous) so that IDs keep their meaning; false: "
        "number the segments by size (largest = 0) as a first run does.",
    )
    max_match_distance: float = Field(
        1.0,
        ge=0,
        description="Farthest a previous centroid may be from a new one to pass on its ID, in "
        "standard deviations of the new run's scaled space (euclidean, all features); a "
        "farther cluster is a new segment with a fresh ID.",
    )
    previous: str | None = Field(
        None,
        description="Pin the run to match and compare against: a run folder "
        "{output}/{run_id} (or its committed attempt folder), read with "
        "output.storage_options. Default: the run that output.uri/LATEST names.",
    )
    max_shift: float = Field(
        0.5,
        ge=0,
        description="drift.json flags a segment whose centroid moved more than this, in "
        "standard deviations of the new run's scaled space.",
    )
    max_share_change: float = Field(
        0.05,
        ge=0,
        le=1,
        description="drift.json flags a segment whose share of the rows changed by more than "
        "this (absolute: 0.05 = 5 percentage points).",
    )

    @field_validator("previous")
    @classmethod
    def _previous_uri(cls, uri: str | None) -> str | None:
        if uri is not None:
            location(uri)  # ValueError for '..' segments
        return uri
