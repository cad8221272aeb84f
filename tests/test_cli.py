"""The command line: the demo end to end on a small size, show, and argument errors."""

from __future__ import annotations

import subprocess
import sys


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "kmeans_dask.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_demo_runs_the_whole_job_and_says_where_results_are(tmp_path):
    d = tmp_path / "demo"
    r = _cli(
        "demo",
        "--dir",
        str(d),
        "--customers",
        "6000",
        "--queries",
        "500",
        "--set",
        "kmeans.k_max=7",
        "--set",
        "cluster.n_workers=2",
    )
    assert r.returncode == 0, r.stderr
    assert "K = 5 (silhouette)" in r.stdout  # the generated segments
    assert "adjusted Rand index against the generated segments: 1.0000" in r.stdout
    assert "Dask dashboard: http" in r.stdout
    assert "elbow.png" in r.stdout and "Scores: 500 new customers" in r.stdout
    run_line = next(line for line in r.stdout.splitlines() if line.startswith("Results: "))
    run_uri = run_line.split("Results: ", 1)[1]
    # a second demo run finds the committed run
    again = _cli(
        "demo",
        "--dir",
        str(d),
        "--customers",
        "6000",
        "--queries",
        "500",
        "--set",
        "kmeans.k_max=7",
        "--set",
        "cluster.n_workers=2",
    )
    assert again.returncode == 0 and "already committed: skipped" in again.stdout
    shown = _cli("show", str(d / "results"))
    assert shown.returncode == 0 and '"k": 5' in shown.stdout
    assert run_uri.rsplit("/", 1)[1] in shown.stdout


def test_bad_arguments_exit_2():
    r = _cli("run")
    assert r.returncode == 2 and "config" in r.stderr
    r = _cli("show", "/nonexistent/place")
    assert r.returncode == 1 and "not a run folder" in r.stderr
