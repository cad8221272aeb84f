"""Deployment files: well-formed, and pointing at things that exist."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def test_prefect_deployment_points_at_the_flow_and_enforces_parameters():
    doc = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    [dep] = doc["deployments"]
    path, name = dep["entrypoint"].split(":")
    assert (ROOT / path).exists()
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert flow.name == "segmentation"
    assert dep["enforce_parameter_schema"] is True
    assert set(dep["parameters"]) == {"config_uri", "overrides", "force"}
    assert set(dep["parameters"]) <= set(flow.parameters.properties)
    assert (ROOT / dep["parameters"]["config_uri"]).exists()
    assert dep["schedules"][0]["cron"].count(" ") == 4


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
