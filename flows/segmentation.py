"""The segmentation flow: each pipeline stage is a Prefect task; the flow owns one Dask client.

Thin by design: no numerics here. Stages that do I/O retry with backoff, and only when the
failure can be transient (:func:`retry_transient`: network, HTTP 5xx, throttling); a config or
data error, access denied or a missing bucket fails at once. Tasks that take a client or a
Dask collection use ``cache_policy=NO_CACHE`` and ``persist_result=False``; task parameters
stay small. The Dask work runs on one plain ``distributed.Client`` created once per flow run
(not prefect-dask's task runner; see DESIGN.md section 5).

Credentials are never flow parameters (Prefect stores parameters in its database): they come
from the environment, from a Prefect Secret block named by ``secrets_block``, or, for
``kmeans-dask run --set ...storage_options.secret=...``, from the CLI's process through
:func:`kmeans_dask.job.secrets.provided`. ``overrides`` holding a credential are refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from kmeans_dask.exceptions import ConfigError
from kmeans_dask.io.errors import is_transient
from kmeans_dask.job import pipeline, secrets
from kmeans_dask.job.config import load_config
from kmeans_dask.job.drift import describe
from kmeans_dask.stopping import exits_within

#: retries (with backoff) of the stages whose failures can be transient (storage, network)
RETRIES = {
    "plan": 3,
    "read": 2,
    "continuity": 2,
    "assign": 2,
    "score": 2,
    "model": 2,
    "profiles": 2,
    "drift": 2,
    "commit": 2,
}
BACKOFF = [2, 10, 30]


def _exception(state: Any) -> BaseException | None:
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception:
        return None
    return result if isinstance(result, BaseException) else None


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed stage only when its exception
    :func:`~kmeans_dask.io.errors.is_transient` (a plain function, as Prefect requires)."""
    exc = _exception(state)
    return exc is not None and is_transient(exc)


def _in_a_run(record: logging.LogRecord) -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


@contextmanager
def library_logs_to_prefect() -> Iterator[None]:
    """Inside the block, the library's INFO records (``kmeans_dask``: one line per stage)
    reach the flow run's logs in Prefect (UI and API).

    Prefect's own setting does the work: with ``PREFECT_LOGGING_EXTRA_LOGGERS=kmeans_dask``
    (set by the CLI; set it in a deployment's environment, see deploy/README.md) Prefect
    attaches its API handler to the ``kmeans_dask`` logger. When the setting is missing
    (a worker started without it), Prefect's same ``APILogHandler`` is attached here for
    the block. The logger's level is raised to INFO if it is unset or higher, and restored.
    """
    from prefect.logging.handlers import APILogHandler

    lib = logging.getLogger("kmeans_dask")
    added = None
    if not any(isinstance(h, APILogHandler) for h in lib.handlers):
        added = APILogHandler()
        added.addFilter(_in_a_run)  # other threads' records stay local, without a warning
        lib.addHandler(added)
    previous_level = lib.level
    if lib.level == logging.NOTSET or lib.level > logging.INFO:
        lib.setLevel(logging.INFO)
    try:
        yield
    finally:
        if added is not None:
            lib.removeHandler(added)
        lib.setLevel(previous_level)


def _as_task(name: str, func: Callable, args: tuple) -> Any:
    t = task(
        func,
        name=name,
        retries=RETRIES.get(name, 0),
        retry_delay_seconds=BACKOFF,
        retry_condition_fn=retry_transient,
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
    # continuity: segment IDs and drift (drift.json)
    lines += [f"- {line}" for line in describe(result.drift)]
    if result.metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in result.metrics.items()]
    if result.timings:
        lines += ["", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in result.timings.items()]
    if not result.skipped:
        plots = result.results_uri
        lines += ["", f"Plots: `{plots}/elbow.png`, `{plots}/silhouette.png`"]
    if result.profiles:  # the segment profiles (profiles.md)
        lines += ["", result.profiles]
    return "\n".join(lines)


def _rounded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep table's records with floats rounded to 6 decimals (missing values stay None)."""
    return [
        {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in records
    ]


def _refuse_credentials(overrides: dict[str, Any] | None) -> None:
    keys = [k for k, v in (overrides or {}).items() if secrets.is_secret_override(k, v)]
    if keys:
        raise ConfigError(
            f"overrides: {', '.join(keys)} carry credentials, which must not be flow "
            "parameters (Prefect stores parameters in its database); give them through the "
            "environment or a Prefect Secret block (secrets_block)"
        )


def _block_secrets(name: str | None) -> dict[str, Any]:
    """Credential overrides from the Prefect Secret block ``name`` (see
    :func:`kmeans_dask.job.secrets.from_document` for its JSON)."""
    if not name:
        return {}
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError:
        raise ConfigError(f"secrets_block: no Prefect Secret block named {name!r}") from None
    return secrets.from_document(value, source=f"Prefect Secret block {name!r}")


@flow(name="segmentation", log_prints=True)
def segmentation(
    config_uri: str,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    secrets_block: str | None = None,
) -> dict[str, Any]:
    """Run the segmentation job of ``config_uri`` (YAML), with ``overrides`` of key paths.

    Parameters
    ----------
    config_uri : str
        Local path or URI of the run's YAML config.
    overrides : dict, optional
        ``{"kmeans.k": 6}``-style overrides of config values. Credentials are refused here
        (a :class:`~kmeans_dask.exceptions.ConfigError`): Prefect stores parameters.
    force : bool
        Recompute even if the run is already committed.
    secrets_block : str, optional
        Name of a Prefect Secret block whose JSON value holds storage options per location,
        ``{"input": {"key": ..., "secret": ...}, "output": {...}, "knn.query": {...}}``,
        applied after ``overrides``.

    Returns
    -------
    dict
        The :class:`~kmeans_dask.job.pipeline.RunResult` as plain data.
    """
    _refuse_credentials(overrides)
    with secrets.provided(_block_secrets(secrets_block)):
        config = load_config(config_uri, overrides or {})
    with library_logs_to_prefect():
        result = pipeline.run(config, force=force, stages=pipeline.Stages(wrap=_as_task))
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


class _NoTraceback(logging.Formatter):
    """Format a record as ``inner`` does, without its traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


@contextmanager
def console_tracebacks(show: bool) -> Iterator[None]:
    """Inside the block, Prefect's console log lines carry no tracebacks unless ``show``
    (the CLI prints one line per failure, and the traceback with ``-v``). What Prefect
    sends to its API (the UI's logs) is unchanged."""
    from prefect.logging.handlers import PrefectConsoleHandler

    if show:
        yield
        return
    names = ["", *(n for n in logging.root.manager.loggerDict if n.startswith("prefect"))]
    handlers = {
        h
        for n in names
        for h in logging.getLogger(n or None).handlers
        if isinstance(h, PrefectConsoleHandler)
    }
    saved = {h: h.formatter for h in handlers}
    for h in handlers:
        h.setFormatter(_NoTraceback(h.formatter))
    try:
        yield
    finally:
        for h, formatter in saved.items():
            h.setFormatter(formatter)


def cron_schedule(cron: str, timezone: str | None = None) -> Any:
    """A validated Prefect cron schedule (a :class:`~kmeans_dask.exceptions.ConfigError`
    naming ``--cron`` or ``--timezone`` otherwise)."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.schedules import Cron
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        hints = {
            "--cron": 'five fields, minute hour day month weekday, e.g. "0 3 * * *"',
            "--timezone": "an IANA name, e.g. Europe/Berlin",
        }
        problems = []
        for err in exc.errors():
            key = "--timezone" if "timezone" in err.get("loc", ()) else "--cron"
            msg = str(err.get("msg", "")).removeprefix("Value error, ").split(" (specify")[0]
            problems.append(f"{key}: {msg} ({hints[key]})")
        raise ConfigError("; ".join(problems)) from None
    return Cron(cron, timezone=timezone)


def serve(
    config_uri: str,
    *,
    name: str,
    cron: str,
    timezone: str | None = None,
    overrides: dict[str, Any] | None = None,
    secrets_block: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve :func:`segmentation` as deployment ``segmentation/{name}`` on the ``cron``
    schedule (Prefect's runner, as ``Flow.serve`` runs it: this process polls for its runs
    and runs each in a subprocess; no work pool or worker needed). Blocks until interrupted;
    the schedule is paused when it stops, and the process ends at most
    :data:`~kmeans_dask.stopping.STOP_GRACE` s after Ctrl+C. The parameters are stored by
    Prefect: no credentials in them."""
    _refuse_credentials(overrides)
    schedule = cron_schedule(cron, timezone)
    parameters = {
        "config_uri": config_uri,
        "overrides": overrides or None,
        "force": False,
        "secrets_block": secrets_block,
    }
    announce(
        f"Serving deployment segmentation/{name} of {config_uri} on cron '{cron}' "
        f"({timezone or 'UTC'})."
    )
    announce(f"A run now: prefect deployment run 'segmentation/{name}'")
    announce("Stop with Ctrl+C or SIGTERM (the schedule is paused when serving stops).")
    # what Flow.serve does, with our own Ctrl+C: a bounded stop (kmeans_dask.stopping)
    from prefect.runner import Runner

    runner = Runner(name=name, pause_on_shutdown=True)
    runner.add_flow(
        segmentation,
        name=name,
        schedules=[schedule],
        parameters=parameters,
        description=f"kmeans-dask serve {config_uri}",
        tags=["segmentation", "serve"],
        entrypoint_type=_module_entrypoint(),
    )
    asyncio.run(_until_interrupted(runner))


async def _until_interrupted(runner: Any) -> None:
    """``runner.start()`` until Ctrl+C, which cancels it the way ``asyncio.run`` would (the
    runner's exit then pauses the schedule), and bounds its stop: the process exits with
    130 if the runner has not stopped :data:`~kmeans_dask.stopping.STOP_GRACE` s later."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    asked: list[bool] = []

    def stop() -> None:
        asked.append(True)
        loop.call_soon_threadsafe(task.cancel)

    with exits_within(what="kmeans-dask serve", on_interrupt=stop):
        try:
            await runner.start()
        except asyncio.CancelledError:
            if not asked:
                raise


def _module_entrypoint() -> Any:
    """Runs import the flow from its module (``flows.segmentation.segmentation``), wherever
    the package is installed, rather than from a file path."""
    from prefect.types.entrypoint import EntrypointType

    return EntrypointType.MODULE_PATH
