"""The command line: the demo end to end on a small size, show, and argument errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
    listed = r.stdout.split("Where the results are:", 1)[1].split()
    assert {Path(p).name for p in listed} >= {"profiles.md", "profiles.png", "drift.json"}
    assert all(Path(p).exists() for p in listed), listed
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


def test_exit_codes_and_one_line_messages():
    from kmeans_dask import cli
    from kmeans_dask.exceptions import (
        ConfigError,
        DatasetError,
        InputError,
        InvalidParameterError,
        StorageError,
    )

    cases = [
        (ConfigError("invalid c.yaml:\n  kmeans.kk: unknown key"), 2, "invalid c.yaml: kmeans.kk"),
        (DatasetError("column 'x' not found in /d"), 2, "input error: column 'x' not found"),
        (InputError("column 'x' has 2 NaN value(s)"), 2, "input error: column 'x' has 2 NaN"),
        (InvalidParameterError("n_samples=2 should be >= n_clusters=3"), 2, "invalid parameter"),
        (StorageError("reading s3://b/k: access denied"), 1, "storage error: reading s3://b/k"),
        (RuntimeError("boom\nmore"), 1, "failed: RuntimeError: boom (run with -v for the"),
    ]
    for exc, code, line in cases:
        assert cli.exit_code(exc) == code, exc
        assert cli.describe(exc).startswith(line), cli.describe(exc)
        assert "\n" not in cli.describe(exc)


def _harness_env() -> dict:
    """The environment of a CLI subprocess that talks to the session's Prefect harness."""
    import os

    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def test_a_failure_is_one_line_and_the_traceback_comes_with_v(prefect_harness, tmp_path):
    """Through the Prefect flow (the default path): no traceback from the CLI or from
    Prefect's console log without -v; the traceback with -v; the last line names the path."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: t\ninput: {{uri: {tmp_path / 'nowhere'}}}\noutput: {{uri: {tmp_path / 'out'}}}\n"
    )
    env = _harness_env()
    for verbose in (False, True):
        r = subprocess.run(
            [sys.executable, "-m", "kmeans_dask.cli", *(["-v"] if verbose else []), "run", cfg],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
        )
        assert r.returncode == 2, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last == (
            f"kmeans-dask: input error: {tmp_path / 'nowhere'} does not exist (no such file or "
            "folder); check the uri"
        ), r.stderr
        assert ("Traceback" in r.stderr) is verbose, r.stderr
        assert "AwaitingRetry" not in r.stderr, r.stderr  # a missing input is not retried
    assert not (tmp_path / "out").exists()


def test_show_takes_storage_options_for_a_custom_endpoint(s3, _session_client, tmp_path):
    from conftest import Store

    from kmeans_dask import cli
    from kmeans_dask.job.demo import DEMO_FEATURES, make_customers

    store = Store("s3://test-bucket/show", s3)
    df, _ = make_customers(400, seed=3)
    store.write_partitioned("in", df, 2)
    cfg = tmp_path / "c.yaml"
    options = f"storage_options: {{endpoint_url: '{s3['endpoint_url']}'}}"
    cfg.write_text(
        "name: show\n"
        f"input: {{uri: {store.uri('in')}, columns: {DEMO_FEATURES}, {options}}}\n"
        "kmeans: {k: 3, max_iter: 10}\n"
        f"output: {{uri: {store.uri('out')}, {options}}}\n"
        f"cluster: {{address: {_session_client.scheduler.address}}}\n"
    )
    assert cli.main(["run", str(cfg), "--no-prefect"]) == 0
    r = _cli("show", store.uri("out"), "--storage-option", f"endpoint_url={s3['endpoint_url']}")
    assert r.returncode == 0, r.stderr
    assert '"name": "show"' in r.stdout and '"k": 3' in r.stdout
    bad = _cli("show", store.uri("out"), "--storage-option", "endpoint_url")
    assert bad.returncode == 2
    assert bad.stderr == (
        "kmeans-dask: --storage-option 'endpoint_url': expected NAME=VALUE, e.g. "
        "endpoint_url=http://localhost:9000\n"
    )
