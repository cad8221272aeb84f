"""The segmentation flow: each pipeline stage is a Prefect task; the flow owns one Dask client.

Thin by design: no numerics here. Stages that do I/O retry with backoff. Tasks that take a
client or a Dask collection use ``cache_policy=NO_CACHE`` and ``persist_result=False``; task
parameters stay small. The Dask work runs on one plain ``distributed.Client`` created once
per flow run (not prefect-dask's task runner; see DESIGN.md section 5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from kmeans_dask.job import pipeline
from kmeans_dask.job.config import load_config

#: retries (with backoff) of the stages whose failures can be transient (storage, network)
RETRIES = {"plan": 3, "read": 2, "assign": 2, "score": 2, "model": 2, "commit": 2}
BACKOFF = [2, 10, 30]


class _ToPrefect(logging.Handler):
    """Forward the library's log records to the flow run's logger (UI and API)."""

    def __init__(self, run_logger: Any) -> None:
        super().__init__(logging.INFO)
        self.run_logger = run_logger

    def emit(self, record: logging.LogRecord) -> None:
        self.run_logger.log(record.levelno, record.getMessage())


def _as_task(name: str, func: Callable, args: tuple) -> Any:
    t = task(
        func,
        name=name,
        retries=RETRIES.get(name, 0),
        retry_delay_seconds=BACKOFF,
        cache_policy=NO_CACHE,
        persist_result=False,
    )
    return t(*args)


def _summary_markdown(result: pipeline.RunResult, config_uri: str) -> str:
    lines = [
        f"# Segmentation run `{result.run_id}`",
        "",
        f"- config: `{config_uri}`",
        f"- run: `{result.run_uri}`",
        f"- results: `{result.results_uri}`",
        f"- status: {'skipped (already committed)' if result.skipped else 'committed'}",
    ]
    if result.k is not None:
        lines.append(f"- K = **{result.k}** ({result.rule})")
    if result.metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in result.metrics.items()]
    if result.timings:
        lines += ["", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in result.timings.items()]
    if not result.skipped:
        plots = result.results_uri
        lines += ["", f"Plots: `{plots}/elbow.png`, `{plots}/silhouette.png`"]
    return "\n".join(lines)


def _rounded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep table's records with floats rounded to 6 decimals (missing values stay None)."""
    return [
        {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in records
    ]


@flow(name="segmentation", log_prints=True)
def segmentation(
    config_uri: str, overrides: dict[str, Any] | None = None, force: bool = False
) -> dict[str, Any]:
    """Run the segmentation job of ``config_uri`` (YAML), with ``overrides`` of key paths.

    Parameters
    ----------
    config_uri : str
        Local path or URI of the run's YAML config.
    overrides : dict, optional
        ``{"kmeans.k": 6}``-style overrides of config values.
    force : bool
        Recompute even if the run is already committed.

    Returns
    -------
    dict
        The :class:`~kmeans_dask.job.pipeline.RunResult` as plain data.
    """
    run_logger = get_run_logger()
    config = load_config(config_uri, overrides or {})
    forward = _ToPrefect(run_logger)
    lib_logger = logging.getLogger("kmeans_dask")
    lib_logger.addHandler(forward)
    previous_level = lib_logger.level
    if lib_logger.level == logging.NOTSET or lib_logger.level > logging.INFO:
        lib_logger.setLevel(logging.INFO)
    try:
        result = pipeline.run(config, force=force, stages=pipeline.Stages(wrap=_as_task))
    finally:
        lib_logger.removeHandler(forward)
        lib_logger.setLevel(previous_level)
    create_markdown_artifact(
        _summary_markdown(result, config_uri),
        key="segmentation-summary",
        description=f"run {result.run_id}",
    )
    if result.sweep:
        create_table_artifact(
            _rounded(result.sweep),
            key="segmentation-sweep",
            description="K sweep: inertia, silhouettes, Calinski-Harabasz, Davies-Bouldin",
        )
    return result.as_dict()
