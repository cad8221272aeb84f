"""The segmentation job as plain Python: plan -> read -> scale -> sweep -> fit -> continuity
(segment IDs) -> assign -> profiles -> score -> model -> drift -> commit. Runnable without
Prefect; ``flows/segmentation.py`` wraps these stages.

Each stage is a function of small, explicit inputs so that an orchestrator can run it as a
task. Results are written under ``{output}/{run_id}/`` and committed with ``_SUCCESS`` last
(see :mod:`kmeans_dask.io.commit`); a committed run with the same id is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pandas as pd

from .. import progress
from ..engine.memory import PauseWatch
from ..faults import fault_point
from ..io import RunCommit, read_run_file, redact, run_id_for
from ..kmeans import KMeans
from ..sweep import SweepResult, sweep_k
from .checks import validate_inputs
from .cluster import connect
from .config import RunConfig, config_hash, identity
from .continuity import Continuity, check_previous, resolve_ids
from .drift import write_drift
from .outputs import score_queries, write_assignments
from .prepare import Prepared, read_and_scale
from .profiles import PROFILES_MARKDOWN, write_profiles
from .segmentation_model import SegmentationModel, save_model

__all__ = [
    "Plan",
    "RunResult",
    "Stages",
    "connect",
    "plan",
    "run",
]

logger = logging.getLogger(__name__)

_VERSIONED = (
    "kmeans-dask",
    "dask",
    "distributed",
    "numpy",
    "pandas",
    "pyarrow",
    "s3fs",
    "scikit-learn",
    "numba",
    "prefect",
)


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """What a run is: its id, where it goes, and whether it is already committed."""

    run_id: str
    run_uri: str
    config_hash: str
    inputs: dict[str, Any]
    committed: bool


def _committer(config: RunConfig, run_id: str) -> RunCommit:
    return RunCommit(config.output.uri, run_id, config.output.storage_options or None)


def plan(config: RunConfig) -> Plan:
    """Validate the inputs (listings and footers), fingerprint them and derive the run id;
    checks whether the run is committed. Nothing is written and no cluster is started."""
    inputs = validate_inputs(config)
    check_previous(config)  # a pinned continuity.previous must be a committed run
    run_id = run_id_for(identity(config), inputs, name=config.name)
    commit = _committer(config, run_id)
    return Plan(run_id, commit.uri, config_hash(config), inputs, commit.is_committed())


# --------------------------------------------------------------------------- stages


def _kmeans_params(config: RunConfig) -> dict[str, Any]:
    km = config.kmeans
    return {
        "init": km.init,
        "oversampling_factor": km.oversampling_factor,
        "init_rounds": km.init_rounds,
        "max_iter": km.max_iter,
        "tol": km.tol,
        "n_init": km.n_init,
        "algorithm": km.algorithm,
        "batch_size": km.batch_size,
        "max_no_improvement": km.max_no_improvement,
        "reassignment_ratio": km.reassignment_ratio,
        "refine": km.refine,
    }


def choose_k(config: RunConfig, prepared: Prepared) -> SweepResult | None:
    """Sweep K (when ``kmeans.k`` is 'auto') on the scaled features."""
    km = config.kmeans
    if km.k != "auto":
        return None
    return sweep_k(
        prepared.blocks,
        range(km.k_min, km.k_max + 1),
        select=km.select,
        silhouette_sample_size=config.metrics.silhouette_sample_size,
        random_state=km.random_state,
        **_kmeans_params(config),
    )


def fit(config: RunConfig, prepared: Prepared, sweep: SweepResult | None) -> KMeans:
    """The final model: the sweep's model for the chosen K, or a fit with the fixed K."""
    if sweep is not None:
        return sweep.model
    km = config.kmeans
    return KMeans(int(km.k), random_state=km.random_state, **_kmeans_params(config)).fit(
        prepared.blocks
    )


# --------------------------------------------------------------------------- run


@dataclass
class RunResult:
    """What a run produced (or found already committed). ``as_dict`` is JSON-able.

    ``run_uri`` is the run folder ``{output}/{run_id}`` (what ``show`` and ``load_model``
    take); ``results_uri`` is the committed attempt folder holding the files.
    """

    run_id: str
    run_uri: str
    skipped: bool
    k: int | None = None
    rule: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    results_uri: str | None = None  # the committed attempt's folder (the result files)
    profiles: str | None = None  # the segment profiles (profiles.md), markdown
    # continuity: IDs new and vanished, flagged segments, ARI vs the previous run (drift.json)
    drift: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (for an orchestrator's result store)."""
        from dataclasses import asdict

        return asdict(self)


def versions() -> dict[str, str]:
    """Versions of the packages that shape the results (for the manifest)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


class Stages:
    """Run the stages in order, timing each; ``wrap`` lets an orchestrator run each stage
    as its own task (the Prefect flow passes a function that submits a task).

    Each stage logs one INFO line when done (``stage NAME done in S s``; its start is at
    DEBUG) and is a :func:`kmeans_dask.progress.task` for a terminal's live display."""

    def __init__(self, wrap: Callable[[str, Callable, tuple], Any] | None = None) -> None:
        self.timings: dict[str, float] = {}
        self._wrap = wrap

    def __call__(self, name: str, func: Callable, *args: Any) -> Any:
        t0 = time.perf_counter()
        logger.debug("stage %s ...", name)
        fault_point(f"stage:{name}")
        with progress.task(f"stage {name}"):
            out = self._wrap(name, func, args) if self._wrap else func(*args)
        self.timings[name] = round(time.perf_counter() - t0, 3)
        logger.info("stage %s done in %.2f s", name, self.timings[name])
        return out


def run(
    config: RunConfig,
    force: bool = False,
    stages: Stages | None = None,
    client: Any = None,
    on_connect: Callable[[Any], None] | None = None,
) -> RunResult:
    """Run the whole job (connects its own cluster unless a client is given).

    The run's lease is taken before any computing (a concurrent run of the same id fails
    at once with :class:`~kmeans_dask.io.LeaseHeldError`), and the committed attempt of a
    forced rerun stays readable until the new one is committed. ``on_connect(client)`` is
    called once the cluster is up (e.g. to print the dashboard).
    """
    stages = stages or Stages()
    p = stages("plan", plan, config)
    run_commit = _committer(config, p.run_id)
    if (p.committed and not force) or not run_commit.begin(force=force):
        return _skipped(run_commit, p)
    with run_commit.attempt():
        # a given client becomes the current one: every stage and estimator runs on it
        ctx = connect(config) if client is None else _as_current(client)
        with ctx as c, PauseWatch(c) as watch:
            if on_connect is not None:
                on_connect(c)
            try:
                return _execute(config, p, run_commit, stages)
            except BaseException:
                watch.check()  # a worker stuck paused for memory: say so, not "cancelled"
                raise


@contextlib.contextmanager
def _as_current(client: Any) -> Iterator[Any]:
    with client.as_current():
        yield client


def _skipped(run_commit: RunCommit, p: Plan) -> RunResult:
    """The result of a run found committed (LATEST repaired if it was left behind)."""
    logger.info("run %s is already committed at %s: skipped", p.run_id, p.run_uri)
    run_commit.repair_latest()
    run_commit.remove_stale_lease()
    manifest = run_commit.manifest()
    profiles = read_run_file(run_commit.uri, PROFILES_MARKDOWN, run_commit.storage_options)
    return RunResult(
        p.run_id,
        p.run_uri,
        True,
        manifest.get("k"),
        manifest.get("k_rule"),
        manifest.get("metrics", {}),
        manifest.get("timings", {}),
        manifest.get("files", []),
        results_uri=run_commit.committed_uri(),
        profiles=None if profiles is None else profiles.decode(),
        drift=manifest.get("drift", {}),
    )


def _execute(config: RunConfig, p: Plan, run_commit: RunCommit, stages: Stages) -> RunResult:
    prepared = stages("read", read_and_scale, config)
    try:
        sweep = stages("sweep", choose_k, config, prepared)
        model = stages("fit", fit, config, prepared, sweep)
        # segment IDs (matched to the previous run): every output below uses them
        # cont.ids[raw] is the ID of raw cluster index raw (profiles take the same array)
        cont = stages("continuity", resolve_ids, config, prepared, model)
        assigned = stages("assign", write_assignments, run_commit, prepared, model, cont.ids)
        profiles = stages(
            "profiles", write_profiles, run_commit, prepared, model, assigned, cont.ids
        )
        if config.knn.enabled:
            stages("score", score_queries, config, run_commit, prepared, model, cont.ids)
        metrics = stages(
            "model", _write_model, config, run_commit, prepared, model, sweep, p, cont
        )
        drift = stages("drift", write_drift, config, run_commit, prepared, model, cont)
    finally:
        prepared.release()  # a long-lived (external) cluster keeps nothing of this run
    manifest = {
        "name": config.name,
        "config": _redacted(config),
        "config_hash": p.config_hash,
        "inputs": p.inputs,
        "versions": versions(),
        "k": int(model.n_clusters),
        "k_rule": sweep.rule if sweep is not None else "fixed",
        "metrics": metrics,
        "sweep": _records(sweep),
        "timings": stages.timings,
        "memory": prepared.memory.as_dict(),
        "continuity": cont.manifest_section(),  # raw cluster index -> segment ID, new, vanished
        "drift": drift,  # summary of drift.json
    }
    full = stages("commit", run_commit.commit, manifest)
    return RunResult(
        p.run_id,
        run_commit.uri,
        False,
        manifest["k"],
        manifest["k_rule"],
        metrics,
        dict(stages.timings),
        full["files"],
        manifest["sweep"],
        results_uri=run_commit.results_uri,
        profiles=profiles.markdown(),
        drift=drift,
    )


def _records(sweep: SweepResult | None) -> list[dict[str, Any]]:
    """The sweep table as JSON-able records (NaN as None)."""
    if sweep is None:
        return []
    table = sweep.table.astype(object).where(sweep.table.notna(), None)
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in table.to_dict(orient="records")
    ]


def _redacted(config: RunConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data["input"]["storage_options"] = redact(data["input"].get("storage_options"))
    data["output"]["storage_options"] = redact(data["output"].get("storage_options"))
    if data["knn"].get("query"):
        data["knn"]["query"]["storage_options"] = redact(data["knn"]["query"]["storage_options"])
    return data


def _write_model(
    config: RunConfig,
    run: RunCommit,
    prepared: Prepared,
    model: KMeans,
    sweep: SweepResult | None,
    p: Plan,
    cont: Continuity,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {"inertia": float(model.inertia_), "n_iter": int(model.n_iter_)}
    if sweep is not None:
        run.write_table("sweep.parquet", sweep.table)
        run.write_bytes("elbow.png", sweep.plot_elbow())
        run.write_bytes("silhouette.png", sweep.plot_silhouette())
        row = sweep.table.set_index("k").loc[sweep.k]
        for col in (
            "silhouette_sample",
            "silhouette_full_sq",
            "calinski_harabasz",
            "davies_bouldin",
        ):
            metrics[col] = None if pd.isna(row[col]) else float(row[col])
        metrics["knee"] = sweep.knee.x
    features = prepared.dataset.info.features
    seg_model = SegmentationModel(
        model,
        prepared.scaler,
        features,
        {"run_id": p.run_id, "name": config.name, "k_rule": sweep.rule if sweep else "fixed"},
        segment_ids=cont.ids,
    )
    save_model(run, seg_model)
    return metrics
