"""Command line: ``kmeans-dask run | validate | demo | show``.

Exit codes: 0 success (or a committed run skipped); 2 invalid config or arguments, or input
that does not match the config (missing or non-numeric column, no files): nothing is written;
1 a run that failed otherwise (storage errors, bad values found while computing). Every
message names the key, file or column.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kmeans-dask", description="Distributed k-means segmentation on Dask."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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

    s = sub.add_parser("show", help="print the manifest of a committed run")
    s.add_argument("run_uri", help="{output}/{run_id} (or {output} for its LATEST run)")
    return p


def _setup_logging(verbose: bool) -> None:
    """Live progress on a terminal (rich), warnings only when not a TTY."""
    level = logging.DEBUG if verbose else logging.INFO
    log = logging.getLogger("kmeans_dask")
    log.handlers.clear()
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        level = logging.DEBUG if verbose else logging.WARNING
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


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
    if result.timings:
        out("Stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))


def _run(config_uri: str, overrides: list[str], force: bool, use_prefect: bool) -> Any:
    from .job.config import load_config

    config = load_config(config_uri, overrides)  # validate before anything starts
    if use_prefect:
        from flows.segmentation import segmentation

        from .job.config import parse_overrides
        from .job.pipeline import RunResult

        data = segmentation(config_uri, overrides=parse_overrides(overrides) or None, force=force)
        return RunResult(**data)
    from .job.pipeline import run

    def dashboard(client: Any) -> None:
        print(f"Dask dashboard: {client.dashboard_link}", flush=True)

    return run(config, force=force, on_connect=dashboard)


def _show(run_uri: str) -> int:
    from .exceptions import StorageError
    from .io import read_manifest

    try:
        manifest = read_manifest(run_uri)
    except StorageError as exc:
        print(f"kmeans-dask show: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(manifest, indent=2, sort_keys=True, default=str))
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
    result = _run(config_uri, overrides, args.force, args.prefect)
    _summary(result)
    for line in check_demo(base, result):
        print(line)
    run = Path(result.results_uri)
    print("\nWhere the results are:")
    for rel in (
        "elbow.png",
        "silhouette.png",
        "sweep.parquet",
        "assignments/",
        "scores/",
        "model/",
        "manifest.json",
    ):
        print(f"  {run / rel}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kmeans-dask`` command."""
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    from .exceptions import ConfigError, DatasetError, KMeansDaskError

    try:
        if args.command == "validate":
            from .job.config import load_config

            cfg = load_config(args.config, args.overrides)
            print(json.dumps(cfg.model_dump(mode="json"), indent=2))
            print(f"{args.config}: valid", file=sys.stderr)
            return 0
        if args.command == "show":
            return _show(args.run_uri)
        if args.command == "demo":
            return _demo(args)
        result = _run(args.config, args.overrides, args.force, not args.no_prefect)
        _summary(result)
        return 0
    except ConfigError as exc:
        print(f"kmeans-dask: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DatasetError as exc:
        print(f"kmeans-dask: input does not match the config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KMeansDaskError as exc:
        print(f"kmeans-dask: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
