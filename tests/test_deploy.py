"""Deployment files: well-formed, and pointing at things that exist."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def _deployments() -> dict[str, dict]:
    doc = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    assert doc.get("pull") is None  # no project-wide pull step: each deployment has its own
    return {d["name"]: d for d in doc["deployments"]}


def _flow(entrypoint: str):
    if ":" in entrypoint:  # a file path (relative to the checkout or the image's folder)
        path, name = entrypoint.split(":")
        assert (ROOT / path).exists()
        module = path.removesuffix(".py").replace("/", ".")
    else:  # a module path of the installed package
        module, name = entrypoint.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_prefect_deployments_point_at_the_flow_and_enforce_parameters():
    deps = _deployments()
    assert set(deps) == {"weekly-customer-segments", "weekly-customer-segments-installed"}
    for dep in deps.values():
        flow = _flow(dep["entrypoint"])
        assert flow.name == "segmentation"
        assert dep["enforce_parameter_schema"] is True
        assert set(dep["parameters"]) == {"config_uri", "overrides", "force", "secrets_block"}
        assert set(dep["parameters"]) == set(flow.parameters.properties)
        assert dep["work_pool"]["name"] == "segmentation"
        [schedule] = dep["schedules"]
        assert schedule["cron"].count(" ") == 4 and schedule["timezone"]


def test_the_image_deployment_works_in_the_image_folder():
    dep = _deployments()["weekly-customer-segments"]
    [step] = dep["pull"]
    folder = step["prefect.deployments.steps.set_working_directory"]["directory"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"WORKDIR {folder}" in dockerfile  # the image has the repo there
    assert (ROOT / dep["parameters"]["config_uri"]).exists()  # relative to that folder


def test_the_installed_deployment_assumes_no_path():
    """Importable from the installed package (``flows`` ships in the wheel), no pull step
    (an explicit ``[]``: Prefect would otherwise record the deploying machine's folder), the
    config named at deploy time."""
    dep = _deployments()["weekly-customer-segments-installed"]
    assert ":" not in dep["entrypoint"] and not dep["entrypoint"].endswith(".py")
    assert dep["pull"] == []
    assert dep["parameters"]["config_uri"] == "{{ $KMEANS_DASK_CONFIG }}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"flows*"' in pyproject


def test_compose_and_kubernetes_manifests_parse():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert {"prefect-server", "prefect-worker", "dask-scheduler", "dask-worker", "minio"} <= set(
        compose["services"]
    )
    docs = [
        d
        for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]
    kinds = {d["kind"] for d in docs}
    assert {"DaskCluster", "DaskAutoscaler", "Namespace"} <= kinds
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for src in ("kmeans_dask", "flows", "configs", "pyproject.toml"):
        assert src in dockerfile and (ROOT / src).exists()
