"""The fault matrix: crashes, errors and concurrent runs never lose a committed run.

Cases run the real CLI (``kmeans-dask run``) as a subprocess, or the same job in a process
forked from a preloaded forkserver (a SIGKILL at every stage and commit point, cheaply),
against the session's LocalCluster (``DASK_SCHEDULER_ADDRESS``), with a fault injected at a
named point (``KMEANS_DASK_FAULT``, see :mod:`kmeans_dask.faults`): ``kill`` is a SIGKILL of
the process (no cleanup runs), ``raise`` an error inside the stage. After each case:

* the previously committed run is intact (same manifest, same files) and readable
  (``kmeans-dask show`` and ``load_model``);
* LATEST names a committed run;
* no lease or attempt of the failed process is left that blocks anything: a plain rerun
  completes (exit 0).

The table of cases, what the user sees and what is guaranteed is in ``tests/README.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmeans_dask.io import latest_run, read_manifest
from kmeans_dask.job import load_model
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers

pytestmark = pytest.mark.slow


def _config(case: Path, name: str, k: int) -> Path:
    """A config reading the shared inputs (``case/data`` links to them: same run ids in
    every case) and writing to ``case/out``."""
    data = (case / "data").resolve()
    cfg = case / f"{name}.yaml"
    cfg.write_text(
        f"name: {name}\n"
        f"input: {{uri: {data}/in, id_column: customer_id, columns: {DEMO_FEATURES}}}\n"
        f"kmeans: {{k: {k}, random_state: 0}}\n"
        "knn: {enabled: true, n_neighbors: 5, "
        f"query: {{uri: {data}/q, id_column: customer_id}}}}\n"
        f"output: {{uri: {case}/out}}\n"
    )
    return cfg


def _cli(*args: str, address: str, fault: str | None = None, cwd: Path | None = None):
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": address}
    env.pop("KMEANS_DASK_FAULT", None)
    if fault:
        env["KMEANS_DASK_FAULT"] = fault
    return subprocess.Popen(
        [sys.executable, "-m", "kmeans_dask.cli", "-v", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _run(*args: str, address: str, fault: str | None = None) -> tuple[int, str, str]:
    return _finish(_cli(*args, address=address, fault=fault))


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size, leases excluded (they come and go)."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_LEASE." not in p.name
    }


@pytest.fixture(scope="module")
def committed(tmp_path_factory, cluster):
    """Input data and an output folder with two committed runs ("prev", then "new")."""
    base = tmp_path_factory.mktemp("faults")
    data = tmp_path_factory.mktemp("faults-data")
    (data / "in").mkdir()
    (data / "q").mkdir()
    df, _ = make_customers(3000, seed=0)
    q, _ = make_customers(300, seed=1, offset=3000)
    for i, part in enumerate((df.iloc[:1500], df.iloc[1500:])):
        part.drop(columns="region").to_parquet(data / "in" / f"part-{i}.parquet", index=False)
    q.drop(columns="region").to_parquet(data / "q" / "part-0.parquet", index=False)
    (base / "data").symlink_to(data)
    address = cluster.scheduler_address
    for name, k in (("prev", 4), ("new", 5)):
        rc, _, err = _run("run", str(_config(base, name, k)), "--no-prefect", address=address)
        assert rc == 0, err
    return base


@pytest.fixture
def case(committed, tmp_path):
    """A private copy of the committed outputs for one case (the inputs are shared)."""
    base = tmp_path / "case"
    base.mkdir()
    (base / "data").symlink_to((committed / "data").resolve())
    shutil.copytree(committed / "out", base / "out")
    return base


def _run_ids(base: Path) -> dict[str, str]:
    out = base / "out"
    return {
        read_manifest(str(p))["name"]: p.name for p in out.iterdir() if (p / "_SUCCESS").exists()
    }


def _assert_invariants(base: Path, address: str | None = None) -> None:
    """LATEST names a committed run; every committed run is readable (and, with an
    ``address``, shown by the CLI)."""
    out = base / "out"
    latest = latest_run(str(out))
    assert latest is not None and (out / latest / "_SUCCESS").exists()
    for run in (p for p in out.iterdir() if (p / "_SUCCESS").exists()):
        manifest = read_manifest(str(run))
        model = load_model(str(run))
        assert model.kmeans.n_clusters == manifest["k"]
    if address is not None:
        rc, shown, err = _run("show", str(out), address=address)
        assert rc == 0 and f'"run_id": "{latest}"' in shown, err


FORCED_KILLS = ["stage:score=kill"]  # through the real CLI; every point: below


@pytest.mark.parametrize("fault", FORCED_KILLS)
def test_forced_rerun_killed(case, cluster, fault):
    address = cluster.scheduler_address
    run_dir = case / "out" / _run_ids(case)["new"]
    before = _files(run_dir)
    manifest = read_manifest(str(run_dir))
    cfg = str(_config(case, "new", 5))
    rc, _, err = _run("run", cfg, "--no-prefect", "--force", address=address, fault=fault)
    assert rc == -9, err
    now = read_manifest(str(run_dir))
    if fault == "commit:after-pointer=kill":
        assert now["attempt"] != manifest["attempt"]  # switched: the new attempt, complete
        assert now["k"] == manifest["k"] and now["metrics"] == manifest["metrics"]
    else:
        assert now == manifest
        assert {k: v for k, v in _files(run_dir).items() if k in before} == before
    _assert_invariants(case)
    rc, out, err = _run("run", cfg, "--no-prefect", address=address)
    assert rc == 0 and "already committed: skipped" in out, err
    _assert_invariants(case, address)


@pytest.mark.parametrize("stage", ["assign"])
def test_error_in_a_stage_of_a_forced_rerun(case, cluster, stage):
    address = cluster.scheduler_address
    run_dir = case / "out" / _run_ids(case)["new"]
    before = _files(case / "out")
    cfg = str(_config(case, "new", 5))
    rc, _, err = _run(
        "run", cfg, "--no-prefect", "--force", address=address, fault=f"stage:{stage}=raise"
    )
    assert rc == 1 and f"fault injected at stage:{stage}" in err, err
    assert _files(case / "out") == before  # the failed attempt removed its own files
    assert not list(run_dir.glob("_LEASE.*"))  # and released the lease
    _assert_invariants(case, address)
    rc, out, err = _run("run", cfg, "--no-prefect", address=address)
    assert rc == 0 and "already committed: skipped" in out, err


@pytest.mark.parametrize("offset", [0.0, 1.5, 3.0])
def test_two_runs_of_one_config_at_once(case, cluster, offset):
    address = cluster.scheduler_address
    shutil.rmtree(case / "out" / _run_ids(case)["new"])
    cfg = str(_config(case, "new", 5))
    first = _cli("run", cfg, "--no-prefect", address=address)
    time.sleep(offset)
    second = _cli("run", cfg, "--no-prefect", address=address)
    results = [_finish(first), _finish(second)]
    codes = sorted(rc for rc, _, _ in results)
    committed = [out for rc, out, _ in results if rc == 0 and "committed." in out]
    assert len(committed) == 1, results
    for rc, _, err in results:
        if rc == 1:  # the loser fails cleanly, naming the other attempt
            assert "being written by another attempt" in err, err
        else:
            assert rc == 0, err
    assert codes[-1] in (0, 1)
    ids = _run_ids(case)
    run_dir = case / "out" / ids["new"]
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("attempt-")) == [
        "_SUCCESS"
    ]
    assert len(list(run_dir.glob("attempt-*"))) == 1
    assert json.loads((run_dir / "_SUCCESS").read_text())["attempt"].startswith("attempt-")
    _assert_invariants(case, address)


STAGES = ["plan", "read", "sweep", "fit", "assign", "score", "model", "commit"]


@pytest.mark.parametrize("stage", [*STAGES, "continuity", "profiles", "drift"])
def test_error_in_each_stage_keeps_the_committed_run(case, client, monkeypatch, stage):
    """In-process (cheap): an exception at the start of every stage of a forced rerun."""
    from kmeans_dask.faults import InjectedFault
    from kmeans_dask.job.config import load_config
    from kmeans_dask.job.pipeline import run

    before = _files(case / "out")
    config = load_config(str(_config(case, "new", 5)))
    monkeypatch.setenv("KMEANS_DASK_FAULT", f"stage:{stage}=raise")
    with pytest.raises(InjectedFault, match=f"stage:{stage}"):
        run(config, force=True, client=client)
    monkeypatch.delenv("KMEANS_DASK_FAULT")
    assert _files(case / "out") == before  # nothing of the failed attempt is left
    assert not list((case / "out").glob("*/_LEASE.*"))
    _assert_invariants(case)
    again = run(config, client=client)
    assert again.skipped


# --------------------------------------------------------------------------- a kill at every stage
# The job runs in a child process forked from a forkserver that has already imported the
# package (no 4 s of imports per case), connected to the session's cluster by address.

KILL_POINTS = [f"stage:{s}=kill" for s in STAGES] + [
    "commit:before-pointer=kill",
    "commit:after-pointer=kill",
    "commit:after-latest=kill",
]


def _job_child(config_path: str, address: str, fault: str, force: bool) -> None:
    os.environ["KMEANS_DASK_FAULT"] = fault
    os.environ["DASK_SCHEDULER_ADDRESS"] = address
    from kmeans_dask.job.config import load_config
    from kmeans_dask.job.pipeline import run

    run(load_config(config_path), force=force)


@pytest.fixture(scope="module")
def forkserver():
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["kmeans_dask.job.pipeline", "kmeans_dask.job.config"])
    return ctx


def _killed(ctx, config: Path, address: str, fault: str, force: bool) -> int:
    proc = ctx.Process(target=_job_child, args=(str(config), address, fault, force))
    proc.start()
    proc.join(timeout=300)
    return proc.exitcode


@pytest.mark.parametrize("fault", KILL_POINTS)
@pytest.mark.parametrize("scenario", ["first run", "forced rerun"])
def test_killed_at_every_point(case, cluster, client, forkserver, scenario, fault):
    from kmeans_dask.job.config import load_config
    from kmeans_dask.job.pipeline import run

    ids = _run_ids(case)
    if scenario == "first run":
        shutil.rmtree(case / "out" / ids["new"])
        (case / "out" / "LATEST").write_text(ids["prev"] + "\n")
    before = {k: v for k, v in _files(case / "out").items() if k != "LATEST"}
    cfg = _config(case, "new", 5)
    code = _killed(forkserver, cfg, cluster.scheduler_address, fault, scenario != "first run")
    assert code == -9
    after = _files(case / "out")
    if scenario == "first run" or not fault.startswith(("commit:after", "stage:commit")):
        # every committed file is untouched (a forced rerun killed before its switch)
        assert {k: v for k, v in after.items() if k in before} == before
    _assert_invariants(case)
    again = run(load_config(str(cfg)), client=client)
    committed_before_kill = scenario == "forced rerun" or fault.startswith("commit:after")
    assert again.skipped == committed_before_kill
    assert latest_run(str(case / "out")) == _run_ids(case)["new"]
    run_dir = case / "out" / _run_ids(case)["new"]
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("attempt-")) == [
        "_SUCCESS"
    ]  # no lease left behind
    assert len(list(run_dir.glob("attempt-*"))) in (1, 2)  # at most one abandoned, never read
    _assert_invariants(case)
