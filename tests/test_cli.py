"""The command line: the demo end to end on a small size, and argument errors."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end_on_a_local_cluster():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kmeans_dask.cli",
            "demo",
            "--rows",
            "20000",
            "--features",
            "4",
            "--k",
            "3",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Adjusted Rand index against the true blobs: 1.0000" in out.stdout
    assert "dashboard" in out.stdout and "Lloyd iteration" in out.stdout


def test_demo_rejects_bad_arguments():
    out = subprocess.run(
        [sys.executable, "-m", "kmeans_dask.cli", "demo", "--rows", "10", "--k", "11"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "--k must be in [1, --rows]; got 11" in out.stderr
