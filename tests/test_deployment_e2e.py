"""A real Prefect deployment end to end, the way users run one: `prefect server start` on
127.0.0.1 (a free port, a temporary PREFECT_HOME, no analytics), a `process` work pool,
`prefect deploy` from deploy/prefect.yaml, `prefect worker start`, `prefect deployment run`,
and the committed results in the S3 bucket. Then `kmeans-dask serve` on a cron schedule
(no work pool), against the same server. Every process started is stopped at the end."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
import s3fs
import yaml
from _processes import ROOT, Processes, environment, executable, processes
from conftest import Store

from kmeans_dask.job.demo import DEMO_FEATURES, make_customers

BUCKET = "deployment-e2e"
POOL = "segmentation"  # the work pool named in deploy/prefect.yaml
INSTALLED = "weekly-customer-segments-installed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `prefect server` and the environment of its clients."""

    def __init__(self, procs: Processes, home: Path, api: str) -> None:
        self.procs, self.home, self.api = procs, home, api

    def env(self, **extra: str) -> dict[str, str]:
        return environment(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_CLI_COLORS="false",
            PREFECT_CLI_WRAP_LINES="false",
            COLUMNS="200",
            **extra,
        )

    def prefect(self, *args: str, timeout: float = 120, **extra: str) -> str:
        """Run `prefect ARGS` to completion; its output (a failure shows every output)."""
        out = subprocess.run(
            [executable("prefect"), "--no-prompt", *args],
            env=self.env(**extra),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if out.returncode != 0:
            raise AssertionError(
                f"prefect {' '.join(args)} exited {out.returncode}\n{out.stdout}\n{out.stderr}\n"
                + self.procs.outputs()
            )
        return out.stdout + out.stderr

    def get(self, path: str) -> dict:
        r = requests.get(f"{self.api}{path}", timeout=10)
        r.raise_for_status()
        return r.json()

    def flow_run_state(self, flow_run_id: str) -> str:
        return self.get(f"/flow_runs/{flow_run_id}")["state"]["type"]

    def wait_completed(self, flow_run_id: str, timeout: float) -> None:
        """Wait for the flow run to finish; it must be COMPLETED."""
        final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
        self.procs.wait_for(
            f"flow run {flow_run_id} to finish",
            lambda: self.flow_run_state(flow_run_id) in final,
            timeout=timeout,
        )
        state = self.flow_run_state(flow_run_id)
        assert state == "COMPLETED", f"flow run {state}\n{self.procs.outputs()}"


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME, for this module."""
    tmp = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    with processes(tmp / "logs") as procs:
        server = Server(procs, tmp / "home", api)
        proc = procs.start(
            "prefect-server",
            [executable("prefect"), "server", "start", "--host", "127.0.0.1",
             "--port", str(port), "--no-ui"],
            env=server.env(
                PREFECT_SERVER_API_HOST="127.0.0.1",
                PREFECT_SERVER_API_PORT=str(port),
                PREFECT_UI_ENABLED="false",
            ),
        )
        procs.wait_for(
            "the Prefect server's /api/health",
            lambda: requests.get(f"{api}/health", timeout=2).ok,
            timeout=120,
            watch=proc,
        )
        server.prefect("work-pool", "create", POOL, "--type", "process")
        yield server


@pytest.fixture(scope="module")
def job(s3_endpoint, cluster, tmp_path_factory):
    """Customers on the S3 server (this module's own bucket) and a config file for them,
    computed on the session's cluster (by address, as a deployment connects to its own)."""
    requests.post(f"{s3_endpoint}/moto-api/reset", timeout=10)
    s3fs.S3FileSystem.clear_instance_cache()
    opts = {"endpoint_url": s3_endpoint}
    s3fs.S3FileSystem(**opts).mkdir(BUCKET)
    store = Store(f"s3://{BUCKET}", opts)
    df, _ = make_customers(1500, seed=21)
    store.write_partitioned("in/customers", df, 2)
    config = {
        "name": "deployed",
        "input": {
            "uri": store.uri("in/customers"),
            "id_column": "customer_id",
            "columns": DEMO_FEATURES,
            "storage_options": opts,
        },
        "kmeans": {"k": 4, "random_state": 1},
        "metrics": {"silhouette_sample_size": 500},
        "output": {"uri": store.uri("results"), "storage_options": opts},
        "cluster": {"address": cluster.scheduler_address},
    }
    path = tmp_path_factory.mktemp("job") / "customers.yaml"
    path.write_text(yaml.safe_dump(config))
    yield store, path
    s3fs.S3FileSystem.clear_instance_cache()


def _committed(store: Store, output: str, result: dict) -> dict:
    """The manifest of the committed run named by the flow run's result, checked: its
    ``_SUCCESS`` names the attempt the flow run wrote, LATEST names the run."""
    fs = store.fs
    fs.invalidate_cache()
    attempt = result["results_uri"]
    run = store.uri(output, result["run_id"])
    assert attempt.startswith(run + "/")
    assert attempt.rsplit("/", 1)[1] in fs.cat_file(f"{run}/_SUCCESS").decode()
    manifest = json.loads(fs.cat_file(f"{attempt}/manifest.json"))
    assert manifest["k"] == 4
    assert fs.cat_file(store.uri(output, "LATEST")).decode().strip() == result["run_id"]
    return manifest


def _flow_run_id(output: str) -> str:
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, output
    return match.group(1)


def _result(server: Server, flow_run_id: str) -> dict:
    """The flow run's return value, as the flow logged it (the summary artifact)."""
    arts = requests.post(
        f"{server.api}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
        timeout=10,
    ).json()
    [summary] = [a for a in arts if a["key"] == "segmentation-summary"]
    text = summary["data"]
    run_id = re.search(r"# Segmentation run `([^`]+)`", text).group(1)
    results = re.search(r"- results: `([^`]+)`", text).group(1)
    return {"run_id": run_id, "results_uri": results}


def test_work_pool_deployment_of_the_installed_package_runs_to_a_committed_result(
    prefect_server, job, tmp_path
):
    server = prefect_server
    store, config = job
    out = server.prefect(
        "deploy", "--prefect-file", "deploy/prefect.yaml", "--name", INSTALLED,
        KMEANS_DASK_CONFIG=str(config),
    )
    assert f"segmentation/{INSTALLED}" in out, out
    dep = server.get(f"/deployments/name/segmentation/{INSTALLED}")
    assert dep["parameters"]["config_uri"] == str(config)
    assert dep["enforce_parameter_schema"] is True
    assert dep["pull_steps"] == []
    assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["0 3 * * 1"]

    # a run now, with the deployment's parameters (what the schedule will do on Mondays)
    flow_run = _flow_run_id(server.prefect("deployment", "run", f"segmentation/{INSTALLED}"))
    # the worker runs in another folder than the checkout: nothing depends on the cwd
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    server.procs.start(
        "prefect-worker",
        [executable("prefect"), "worker", "start", "--pool", POOL, "--run-once", "--limit", "1"],
        env=server.env(),
        cwd=elsewhere,
    )
    server.wait_completed(flow_run, timeout=180)
    manifest = _committed(store, "results", _result(server, flow_run))
    assert manifest["name"] == "deployed"


def test_serve_on_a_cron_schedule_then_a_run_of_it(prefect_server, job):
    """`kmeans-dask serve CONFIG --cron ...`: a deployment with that schedule, served by the
    process itself (no work pool); a run of it triggered now completes; Ctrl+C stops it."""
    import signal

    server = prefect_server
    store, config = job
    name = f"served-{uuid.uuid4().hex[:6]}"
    serve = server.procs.start(
        "kmeans-dask-serve",
        [executable("kmeans-dask"), "serve", str(config), "--cron", "0 3 * * *",
         "--timezone", "Europe/Berlin", "--name", name,
         "--set", "output.uri=" + store.uri("served")],
        env=server.env(),
    )

    def deployment() -> dict:
        return server.get(f"/deployments/name/segmentation/{name}")

    server.procs.wait_for("the served deployment", lambda: bool(deployment()), timeout=90,
                          watch=serve)
    dep = deployment()
    [schedule] = dep["schedules"]
    assert schedule["schedule"]["cron"] == "0 3 * * *"
    assert schedule["schedule"]["timezone"] == "Europe/Berlin"
    assert dep["parameters"]["config_uri"] == str(config)
    assert dep["parameters"]["overrides"] == {"output.uri": store.uri("served")}

    flow_run = _flow_run_id(server.prefect("deployment", "run", f"segmentation/{name}"))
    server.wait_completed(flow_run, timeout=180)
    _committed(store, "served", _result(server, flow_run))

    printed = server.procs.output("kmeans-dask-serve")
    assert f"segmentation/{name}" in printed and "0 3 * * *" in printed
    assert "Ctrl+C" in printed
    # Prefect's runner once kept serving for over 90 s after the interrupt on a loaded
    # machine (SIGKILLed, -9): the CLI now exits at most STOP_GRACE (30 s) after it, with 130
    Processes.stop(serve, sig=signal.SIGINT, timeout=90)
    assert serve.returncode in (0, 130), server.procs.output("kmeans-dask-serve")
    if serve.returncode == 0:  # stopped in time: Prefect's runner paused the schedule
        assert deployment()["paused"] is True, server.procs.output("kmeans-dask-serve")[-2500:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "0 3 * *"], '--cron: Invalid cron string: "0 3 * *" (five fields'),
        (["--cron", "0 3 * * *", "--timezone", "Mars/Olympus"],
         '--timezone: Invalid timezone: "Mars/Olympus" (an IANA name'),
        (["--cron", "0 3 * * *", "--set", "kmeans.k=0"], "kmeans.k: must be"),
        (["--cron", "0 3 * * *", "--set", "input.storage_options.secret=s3cr3t"],
         "--set input.storage_options.secret: credentials cannot be served"),
    ],
)
def test_serve_validates_the_config_and_the_schedule_first(tmp_path, capsys, args, message):
    """Exit 2 and one line naming what is wrong, before anything is served."""
    from kmeans_dask import cli

    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "input": {"uri": str(tmp_path / "in")},
                                   "output": {"uri": str(tmp_path / "out")}}))
    assert cli.main(["serve", str(cfg), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert "s3cr3t" not in err[0]
