"""Command line: ``kmeans-dask run | validate | demo | show | serve``.

Output: one log line per stage on stderr (live progress bars on a terminal), the run's
summary on stdout; ``-v`` adds per-K and per-iteration lines and Dask's and Prefect's own
INFO lines (see :mod:`kmeans_dask.console`).

Exit codes:

* 0: success, or a committed run found and skipped;
* 2: the config or the data is wrong, nothing is written: an invalid config or argument
  (``ConfigError``: unknown key, bad value, ``k_min > k_max``), input that does not fit the
  config or cannot be clustered (``InputError`` / ``DatasetError``: no such file or bucket,
  no files, an unreadable or corrupt file, a missing or non-numeric column, NaN or inf values
  naming the column and the file, a K larger than the number of rows), or a parameter out of
  range (``InvalidParameterError``);
* 1: anything else: storage (``StorageError``: access denied, naming the bucket and the
  operation; a network or service failure; a concurrent run holding the lease) and compute
  failures;
* 130: interrupted.

A failure prints one line (one per key for an invalid config) naming the key, file, column,
bucket or operation; ``-v`` adds the traceback. Credentials given with ``--set`` (keys such
as ``input.storage_options.secret``, see ``kmeans_dask.io.fs.SECRET_KEYS``) are kept out of
the Prefect flow's parameters and out of every message.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .exceptions import describe, exit_code
from .stopping import EXIT_INTERRUPTED

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kmeans-dask", description="Distributed k-means segmentation on Dask."
    )
    verbose = "more output: per-K and per-iteration lines, Dask's and Prefect's INFO, tracebacks"
    p.add_argument("-v", "--verbose", action="store_true", help=verbose)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the segmentation job of a config file")
    r.add_argument("config", help="YAML config (local path or URI)")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set kmeans.k=6 (repeatable)",
    )
    r.add_argument("--force", action="store_true", help="recompute a committed run")
    r.add_argument(
        "--no-prefect",
        action="store_true",
        help="run the plain pipeline instead of the Prefect flow",
    )
    r.add_argument(
        "--secrets-block",
        metavar="NAME",
        default=None,
        help="Prefect Secret block whose JSON holds storage options per location "
        '({"input": {...}, "output": {...}, "knn.query": {...}})',
    )

    v = sub.add_parser("validate", help="check a config file and print it resolved")
    v.add_argument("config")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    d = sub.add_parser("demo", help="generate synthetic customers and run configs/demo.yaml")
    d.add_argument("--dir", default="demo-output", help="working folder (demo-output)")
    d.add_argument("--customers", type=int, default=200_000, help="rows to segment (200,000)")
    d.add_argument("--queries", type=int, default=10_000, help="new rows to score (10,000)")
    d.add_argument("--config", default=None, help="config to run (configs/demo.yaml)")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--force", action="store_true", help="recompute even if committed")
    d.add_argument("--prefect", action="store_true", help="run through the Prefect flow")

    _add_serve(sub)
    _add_show(sub)
    return p


def _add_serve(sub: Any) -> None:
    sv = sub.add_parser(
        "serve",
        help="run the job of a config on a cron schedule (Prefect serve: no work pool needed)",
        description="Serve the segmentation flow as a Prefect deployment with a cron "
        "schedule; this process runs each scheduled (or manually triggered) run until "
        "stopped with Ctrl+C. Needs a Prefect API (PREFECT_API_URL), e.g. `prefect server "
        "start`.",
    )
    sv.add_argument("config", help="YAML config (local path or URI), read again at each run")
    sv.add_argument(
        "--cron", required=True, metavar="EXPR", help='e.g. "0 3 * * *" (every day at 03:00)'
    )
    sv.add_argument(
        "--timezone", default=None, metavar="TZ", help="IANA time zone, e.g. Europe/Berlin (UTC)"
    )
    sv.add_argument("--name", default=None, help="deployment name (default: the config's name)")
    sv.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sv.add_argument(
        "--secrets-block",
        metavar="NAME",
        default=None,
        help="Prefect Secret block with storage credentials (see `run --help`)",
    )


def _add_show(sub: Any) -> None:
    s = sub.add_parser(
        "show", help="print the manifest of a committed run, then its segment profiles"
    )
    s.add_argument("run_uri", help="{output}/{run_id} (or {output} for its LATEST run)")
    s.add_argument(
        "--json", action="store_true", help="print only the manifest (JSON, for scripts)"
    )
    s.add_argument(
        "--storage-option",
        dest="storage_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec/s3fs option, e.g. endpoint_url=http://localhost:9000 (repeatable)",
    )


def _default_demo_config() -> str:
    from .io import exists

    here = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    if exists(str(here)):
        return str(here)
    return "configs/demo.yaml"


def _summary(result: Any, out=print) -> None:
    if result.skipped:
        out(f"Run {result.run_id} is already committed: skipped (use --force to recompute).")
    else:
        out(f"Run {result.run_id} committed.")
    out(f"Run folder: {result.run_uri}")
    out(f"Results: {result.results_uri}")
    if result.k is not None:
        out(f"K = {result.k} ({result.rule})")
    for key, value in (result.metrics or {}).items():
        if isinstance(value, float):
            out(f"  {key}: {value:.6g}")
        elif value is not None:
            out(f"  {key}: {value}")
    # continuity (segment IDs, drift.json)
    from .job.drift import describe

    for line in describe(getattr(result, "drift", None) or {}):
        out(line)
    if result.timings:
        out("Stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))


def _split(overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` items as ``(plain, credential)`` overrides."""
    from .job.config import parse_overrides
    from .job.secrets import split_overrides

    return split_overrides(parse_overrides(overrides))


def _load(config_uri: str, overrides: Mapping[str, Any]) -> Any:
    """The validated config; a config file the store refuses is a StorageError naming it."""
    from .exceptions import KMeansDaskError
    from .io.errors import is_storage_failure, storage_error
    from .job.config import load_config

    try:
        return load_config(config_uri, overrides)
    except KMeansDaskError:
        raise
    except Exception as exc:
        if is_storage_failure(exc):
            raise storage_error("reading the config", config_uri, exc) from exc
        raise


def _run(
    config_uri: str,
    overrides: list[str],
    force: bool,
    use_prefect: bool,
    verbose: bool = False,
    secrets_block: str | None = None,
) -> Any:
    """Run the job; credential overrides reach the config through ``job.secrets.provided``,
    never as the flow's parameters."""
    from .exceptions import ConfigError
    from .job.secrets import provided

    plain, credentials = _split(overrides)
    with provided(credentials):
        config = _load(config_uri, plain)  # validate before anything starts
        if use_prefect:
            from flows.segmentation import console_tracebacks, segmentation

            from .job.pipeline import RunResult

            with console_tracebacks(verbose):
                data = segmentation(
                    config_uri, overrides=plain or None, force=force, secrets_block=secrets_block
                )
            return RunResult(**data)
        if secrets_block:
            raise ConfigError("--secrets-block: needs the Prefect flow (drop --no-prefect)")
        from .job.pipeline import run

        def dashboard(client: Any) -> None:
            services = client.scheduler_info(n_workers=0).get("services", {})
            if "dashboard" in services:  # an existing scheduler may run without one
                print(f"Dask dashboard: {client.dashboard_link}", flush=True)

        return run(config, force=force, on_connect=dashboard)


def _show(run_uri: str, storage_options: list[str], only_json: bool = False) -> int:
    from .exceptions import ConfigError
    from .io import read_manifest, read_run_file
    from .job.config import parse_overrides

    for item in storage_options:
        if "=" not in item or "." in item.partition("=")[0]:
            raise ConfigError(
                f"--storage-option {item!r}: expected NAME=VALUE, e.g. "
                "endpoint_url=http://localhost:9000"
            )
    options = parse_overrides(storage_options)  # values parsed as YAML scalars
    manifest = read_manifest(run_uri, options or None)
    print(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    if not only_json:
        profiles = read_run_file(run_uri, "profiles.md", options or None)
        if profiles is not None:
            print()
            print(profiles.decode())
    return 0


def _validate(config_uri: str, overrides: list[str]) -> int:
    """Print the resolved config (credentials shown as ``***``)."""
    from .io import redact
    from .job.secrets import provided

    plain, credentials = _split(overrides)
    with provided(credentials):
        cfg = _load(config_uri, plain)
    data = cfg.model_dump(mode="json")
    for section in (data["input"], data["output"], (data.get("knn") or {}).get("query")):
        if section and section.get("storage_options"):
            section["storage_options"] = redact(section["storage_options"])
    print(json.dumps(data, indent=2))
    print(f"{config_uri}: valid", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Validate the config and the schedule, then serve until interrupted."""
    from .exceptions import ConfigError

    plain, credentials = _split(args.overrides)
    if credentials:
        raise ConfigError(
            f"--set {', '.join(credentials)}: credentials cannot be served (Prefect stores a "
            "deployment's parameters); give them through this process's environment or "
            "--secrets-block"
        )
    config = _load(args.config, plain)  # validate before anything is served
    from flows.segmentation import cron_schedule, serve

    cron_schedule(args.cron, args.timezone)
    uri = args.config
    if "://" not in uri:  # a local path: the runs may start in another folder
        uri = str(Path(uri).resolve())
    serve(
        uri,
        name=args.name or config.name,
        cron=args.cron,
        timezone=args.timezone,
        overrides=plain or None,
        secrets_block=args.secrets_block,
        announce=lambda line: print(line, flush=True),
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .job.demo import check_demo, write_demo_data

    base = Path(args.dir)
    print(
        f"Synthetic data: {args.customers:,} customers (5 segments) and "
        f"{args.queries:,} new customers under {base}/data"
    )
    data = write_demo_data(base / "data", args.customers, args.queries)
    overrides = [
        f"input.uri={data.customers_uri}",
        f"knn.query.uri={data.queries_uri}",
        f"output.uri={base / 'results'}",
        *args.overrides,
    ]
    config_uri = args.config or _default_demo_config()
    print(f"Running {config_uri} on an embedded local Dask cluster ...")
    result = _run(config_uri, overrides, args.force, args.prefect, args.verbose)
    _summary(result)
    for line in check_demo(base, result):
        print(line)
    run = Path(result.results_uri)
    print("\nWhere the results are:")
    for rel in (
        "elbow.png",
        "silhouette.png",
        "sweep.parquet",
        "profiles.md",
        "profiles.png",
        "profiles.parquet",
        "drift.json",
        "assignments/",
        "scores/",
        "model/",
        "manifest.json",
    ):
        print(f"  {run / rel}")
    return 0


@contextmanager
def _reported(verbose: bool) -> Iterator[list[int]]:
    """Turn an exception into its message on stderr and an exit code (``code[0]``)."""
    code = [0]
    try:
        yield code
    except KeyboardInterrupt:
        print("kmeans-dask: interrupted", file=sys.stderr)
        code[0] = EXIT_INTERRUPTED
    except Exception as exc:
        if verbose:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"kmeans-dask: {describe(exc)}", file=sys.stderr)
        code[0] = exit_code(exc)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate":
        return _validate(args.config, args.overrides)
    if args.command == "show":
        return _show(args.run_uri, args.storage_options, args.json)
    if args.command == "demo":
        return _demo(args)
    if args.command == "serve":
        return _serve(args)
    use_prefect = not args.no_prefect
    result = _run(
        args.config, args.overrides, args.force, use_prefect, args.verbose, args.secrets_block
    )
    _summary(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kmeans-dask`` command (returns the exit code).

    Output (see :mod:`kmeans_dask.console`): the library's log lines once on stderr (one per
    stage; ``-v`` adds the detail and the tools' own INFO lines), live bars on a terminal,
    the summary on stdout. Prefect and Dask settings the user has not set get quiet
    defaults for the duration of the command."""
    args = _parser().parse_args(argv)
    from . import console

    with (
        console.environment(args.verbose, prefect_console=args.command == "serve"),
        console.library_logging(args.verbose) as handler,
        _reported(args.verbose) as code,
        console.reporter(handler),
    ):
        code[0] = _dispatch(args)
    return code[0]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
