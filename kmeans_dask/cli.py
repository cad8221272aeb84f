"""Command line: ``kmeans-dask demo`` (more subcommands come with the pipeline)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kmeans-dask", description="Distributed k-means segmentation on Dask."
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="fit KMeans on seeded synthetic blobs on a local cluster")
    d.add_argument("--rows", type=int, default=1_000_000, help="rows to generate (1,000,000)")
    d.add_argument("--features", type=int, default=16, help="features (16)")
    d.add_argument("--k", type=int, default=8, help="number of blobs and clusters (8)")
    d.add_argument("--workers", type=int, default=None, help="local worker processes (cores)")
    d.add_argument("--seed", type=int, default=0, help="random seed (0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kmeans-dask`` command."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        for name, value, low in (("--rows", args.rows, 1), ("--features", args.features, 1)):
            if value < low:
                print(f"kmeans-dask demo: {name} must be >= {low}; got {value}", file=sys.stderr)
                return 2
        if not 1 <= args.k <= args.rows:
            print(f"kmeans-dask demo: --k must be in [1, --rows]; got {args.k}", file=sys.stderr)
            return 2
        run_demo(args.rows, args.features, args.k, args.workers, args.seed)
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
