"""The drift report of a run against the run it follows (``drift.json``).

Per segment ID: rows and share now and before, the centroid now and before in original
units, its shift per feature and as a norm (original units, and in standard deviations of the
new run's scaled space); flags where the shift or the share change passes
``continuity.max_shift`` / ``continuity.max_share_change`` (segments present in both runs;
new and vanished segments are reported by their status). For the row ids present in both
runs (``input.id_column``), the transition matrix previous segment -> new segment and its
adjusted Rand index, counted on the workers (:func:`~kmeans_dask.engine.transitions.
transition_counts`): the rows are never gathered.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..engine.transitions import transition_counts
from ..io import RunCommit, read_dataset
from ..kernels.contingency import adjusted_rand_from_contingency
from ..kmeans import KMeans
from .config import RunConfig
from .continuity import Continuity, PreviousRun, original_units
from .prepare import Prepared

__all__ = ["DRIFT_FILE", "describe", "drift_report", "summary", "transitions", "write_drift"]

logger = logging.getLogger(__name__)

DRIFT_FILE = "drift.json"


def _by_feature(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def _previous_centroids(previous: PreviousRun) -> dict[int, np.ndarray]:
    C = original_units(previous.model, previous.model.scaler)
    return {int(i): C[j] for j, i in enumerate(previous.ids)}


def _segments(
    config: RunConfig, prepared: Prepared, model: KMeans, cont: Continuity
) -> list[dict[str, Any]]:
    names = list(prepared.dataset.info.features)
    scaler = prepared.scaler
    scale = np.ones(len(names)) if scaler is None or scaler.scale_ is None else scaler.scale_
    now_c = original_units(model, scaler)
    pairs = enumerate(zip(cont.ids, cont.sizes, strict=True))
    now = {int(i): (int(n), now_c[raw]) for raw, (i, n) in pairs}
    total = int(cont.sizes.sum())
    before_c = {} if cont.previous is None else _previous_centroids(cont.previous)
    before_n = None if cont.previous is None else cont.previous.sizes()
    total_before = None if before_n is None else sum(before_n.values())
    spec = config.continuity
    rows = []
    for sid in sorted(set(now) | set(before_c)):
        row: dict[str, Any] = {"id": sid}
        if sid in now and sid in before_c and sid not in cont.new:
            row["status"] = "kept"
        else:
            row["status"] = "new" if sid in now else "vanished"
        size, centroid = now.get(sid, (0, None))
        row["size"] = size
        row["share"] = size / total if total else 0.0
        if before_n is not None:
            row["size_before"] = int(before_n.get(sid, 0))
            row["share_before"] = row["size_before"] / total_before if total_before else 0.0
        elif cont.previous is not None:
            row["size_before"] = row["share_before"] = None  # a run from before continuity
        row["centroid"] = None if centroid is None else _by_feature(names, centroid)
        old = before_c.get(sid)
        if cont.previous is not None:
            row["centroid_before"] = None if old is None else _by_feature(names, old)
        flags = []
        if row["status"] == "kept" and centroid is not None and old is not None:
            delta = centroid - old
            row["shift"] = _by_feature(names, delta)
            row["shift_norm"] = float(np.linalg.norm(delta))
            row["shift_scaled"] = float(np.linalg.norm(delta / scale))
            if row["shift_scaled"] > spec.max_shift:
                flags.append("shift")
            if row.get("share_before") is not None:
                row["share_change"] = row["share"] - row["share_before"]
                if abs(row["share_change"]) > spec.max_share_change:
                    flags.append("share")
        row["flags"] = flags
        rows.append(row)
    return rows


def transitions(config: RunConfig, run: RunCommit, cont: Continuity) -> dict[str, Any]:
    """The transition matrix previous segment -> new segment over the ids in both runs,
    and its adjusted Rand index; ``{"status": "skipped", "reason": ...}`` when the rows
    cannot be followed."""
    previous = cont.previous
    id_col = config.input.id_column
    if previous is None:
        return {"status": "skipped", "reason": cont.reason or "no previous run"}
    if id_col is None:
        return {
            "status": "skipped",
            "reason": "input.id_column is not set: rows cannot be followed across runs",
        }
    before_col = ((previous.manifest.get("config") or {}).get("input") or {}).get("id_column")
    if before_col != id_col:
        return {
            "status": "skipped",
            "reason": f"input.id_column is {id_col!r} here but {before_col!r} in run "
            f"{previous.run_id}: rows cannot be followed across runs",
        }
    options = config.output.storage_options or None
    before = read_dataset(f"{previous.folder}/assignments", "parquet", ["segment"], id_col, options)
    now = read_dataset(f"{run.results_uri}/assignments", "parquet", ["segment"], id_col, options)
    counts, n_ids = transition_counts(before, now, id_col)
    prev_ids = sorted(int(i) for i in previous.ids)
    cur_ids = sorted(int(i) for i in cont.ids)
    table = np.zeros((len(prev_ids), len(cur_ids)), dtype=np.int64)
    row_of = {sid: j for j, sid in enumerate(prev_ids)}
    col_of = {sid: j for j, sid in enumerate(cur_ids)}
    for (a, b), n in counts.items():
        table[row_of[int(a)], col_of[int(b)]] += int(n)
    if table.sum() > n_ids:  # an id on several rows pairs them all: the counts mean nothing
        return {
            "status": "skipped",
            "reason": f"input.id_column {id_col!r} is not unique: {int(table.sum())} pairs "
            f"joined for {n_ids} distinct ids",
        }
    return {
        "status": "computed",
        "id_column": id_col,
        "rows_in_both": int(table.sum()),
        "previous_ids": prev_ids,
        "current_ids": cur_ids,
        "counts": table.tolist(),  # counts[i][j]: rows in previous_ids[i] now in current_ids[j]
        "adjusted_rand_index": adjusted_rand_from_contingency(table) if table.sum() else None,
    }


def drift_report(
    config: RunConfig, run: RunCommit, prepared: Prepared, model: KMeans, cont: Continuity
) -> dict[str, Any]:
    """The content of ``drift.json`` (JSON-able). Reads the new run's assignments, so it
    runs after the assignment stage."""
    spec = config.continuity
    return {
        "previous_run": None if cont.previous is None else cont.previous.run_id,
        "previous_uri": None if cont.previous is None else cont.previous.folder,
        "reason": cont.reason,
        "thresholds": {
            "max_match_distance": spec.max_match_distance,
            "max_shift": spec.max_shift,
            "max_share_change": spec.max_share_change,
        },
        "new": cont.new,
        "vanished": cont.vanished,
        "segments": _segments(config, prepared, model, cont),
        "transitions": transitions(config, run, cont),
    }


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The few lines of a report that a run summary shows (manifest ``drift``)."""
    trans = report["transitions"]
    return {
        "previous_run": report["previous_run"],
        "reason": report["reason"],
        "new": report["new"],
        "vanished": report["vanished"],
        "flagged": {str(s["id"]): s["flags"] for s in report["segments"] if s["flags"]},
        "adjusted_rand_index": trans.get("adjusted_rand_index"),
        "transitions": trans["status"] if trans["status"] == "computed" else trans["reason"],
    }


def describe(short: dict[str, Any]) -> list[str]:
    """A :func:`summary` as a few readable lines (the CLI and the Prefect summary)."""
    if not short:
        return []
    if short.get("previous_run") is None:
        return [f"Segment IDs: numbered by size, largest = 0 ({short.get('reason')})"]
    lines = [
        f"Segment IDs follow run {short['previous_run']}: new {short['new'] or 'none'}, "
        f"vanished {short['vanished'] or 'none'}"
    ]
    flagged = short.get("flagged") or {}
    lines.append(
        "Drift flagged: "
        + (", ".join(f"{sid} ({'+'.join(f)})" for sid, f in flagged.items()) or "none")
        + f" (details in {DRIFT_FILE})"
    )
    ari = short.get("adjusted_rand_index")
    if ari is not None:
        lines.append(f"Rows in both runs: adjusted Rand index {ari:.4f}")
    elif short.get("transitions") != "computed":
        lines.append(f"Transitions not computed: {short.get('transitions')}")
    return lines


def write_drift(
    config: RunConfig, run: RunCommit, prepared: Prepared, model: KMeans, cont: Continuity
) -> dict[str, Any]:
    """Write ``drift.json`` into the run (the pipeline's ``drift`` stage); returns its
    :func:`summary`."""
    report = drift_report(config, run, prepared, model, cont)
    run.write_json(DRIFT_FILE, report)
    short = summary(report)
    if short["flagged"]:
        logger.info("drift: flagged segments %s", short["flagged"])
    return short
