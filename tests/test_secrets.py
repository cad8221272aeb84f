"""Credentials never leave the process: a unique sentinel secret given every way a user can
give one (the environment, ``--set``, the config file, a Prefect Secret block) appears in no
log line (the CLI's, Prefect's console and Prefect's API), no file the run writes (manifest
included), no Prefect artifact, no Prefect flow-run parameter and no exception text (the
failures run with ``-v``, so the whole traceback and its chained exceptions are printed).

The real CLI in-process, the Prefect flow on the session's test harness, the session's
LocalCluster, the moto S3 server.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import yaml
from conftest import Store

# Prefect configures its console log handler on the first import of its flow API, binding it
# to the sys.stderr of that moment: import it now, not inside a test that captures stderr
import flows.segmentation  # noqa: F401
from kmeans_dask.job import secrets
from kmeans_dask.job.config import ConfigError, load_config, parse_overrides
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers


def _sentinels() -> dict[str, str]:
    tag = uuid.uuid4().hex
    return {
        way: f"sentinel-{way}-{tag}"
        for way in ("env-key", "env", "set-key", "set", "file-key", "file", "block")
    }


def _prefect_records() -> list[str]:
    """Everything the harness's API holds about runs: every flow run (parameters, state
    messages), task run, log line and artifact, as text."""
    from prefect.client.orchestration import get_client

    async def read() -> list[str]:
        out: list[str] = []
        async with get_client() as c:
            for reader in (c.read_flow_runs, c.read_task_runs):
                offset = 0
                while batch := await reader(limit=200, offset=offset):
                    out += [r.model_dump_json() for r in batch]
                    offset += len(batch)
            offset = 0
            while batch := await c.read_logs(limit=200, offset=offset):
                out += [log.model_dump_json() for log in batch]
                offset += len(batch)
            out += [a.model_dump_json() for a in await c.read_artifacts(limit=200)]
        return out

    return asyncio.run(read())


def _leaks(text: str, sentinels: dict[str, str]) -> list[str]:
    return [way for way, value in sentinels.items() if value in text]


@pytest.fixture
def job(s3, tmp_path, monkeypatch, _session_client):
    """Input and query on S3, output on S3; credentials from four places."""
    from prefect.blocks.system import Secret

    sent = _sentinels()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", sent["env-key"])  # the query's credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sent["env"])
    store = Store(f"s3://test-bucket/{uuid.uuid4().hex[:8]}", s3)
    df, _ = make_customers(600, seed=4)
    q, _ = make_customers(50, seed=5, offset=600)
    store.write_partitioned("in", df, 2)
    store.write_partitioned("query", q, 1)
    block = f"kmeans-dask-test-{uuid.uuid4().hex[:8]}"
    Secret(value={"output": {"secret": sent["block"]}}).save(block)
    config = {
        "name": "secrets",
        "input": {"uri": store.uri("in"), "columns": DEMO_FEATURES, "storage_options": s3},
        "kmeans": {"k": 3, "max_iter": 10},
        "knn": {
            "enabled": True,
            "n_neighbors": 3,
            "query": {"uri": store.uri("query"), "storage_options": s3},
        },
        "output": {
            "uri": store.uri("out"),
            "storage_options": {**s3, "key": sent["file-key"], "token": sent["file"]},
        },
        "cluster": {"address": _session_client.scheduler.address},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    sets = [
        "--set",
        f"input.storage_options.key={sent['set-key']}",
        "--set",
        f"input.storage_options.secret={sent['set']}",
    ]
    return store, path, sets, block, sent


def _run(argv: list[str], capsys, caplog) -> tuple[int, str]:
    from kmeans_dask import cli

    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err + caplog.text


def test_a_sentinel_secret_appears_nowhere(prefect_harness, job, capsys, caplog, s3_endpoint):
    import requests

    store, config, sets, block, sent = job
    before = len(_prefect_records())
    code, text = _run(["run", str(config), *sets, "--secrets-block", block], capsys, caplog)
    assert code == 0, text
    assert "committed" in text
    assert _leaks(text, sent) == []

    # every file the run wrote, the manifest included
    fs = store.fs
    fs.invalidate_cache()
    written = [p for p in fs.find(store.uri("out")) if not p.endswith(".png")]
    assert any(p.endswith("manifest.json") for p in written)
    for path in written:
        assert _leaks(fs.cat_file(path).decode("utf-8", "replace"), sent) == [], path

    # failures, with -v: the traceback and every chained exception are printed
    failures = [
        # a config error whose value holds a credential (pydantic errors echo values)
        ["--set", f"input.columns={{secret: {sent['set']}}}"],
        # a YAML error on a credential's line
        ["--set", f"output.storage_options.secret=[{sent['set']}"],
        # a run the store refuses (the output's credentials from the file and the block)
        ["--set", "kmeans.k=4"],
    ]
    for extra in failures:
        refuse = extra[-1] == "kmeans.k=4"
        if refuse:
            requests.post(f"{s3_endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
        try:
            argv = ["-v", "run", str(config), *sets, *extra, "--secrets-block", block]
            code, text = _run(argv, capsys, caplog)
        finally:
            requests.post(f"{s3_endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
        assert code != 0 and "Traceback" in text
        assert _leaks(text, sent) == [], text

    # Prefect's database: flow-run parameters, task runs, logs, artifacts
    records = _prefect_records()
    assert len(records) > before
    assert any('"kmeans.k":4' in r for r in records)  # the flow-run parameters are searched
    assert [(_leaks(r, sent), r[:200]) for r in records if _leaks(r, sent)] == []


def test_credential_overrides_are_split_from_the_others():
    parsed = parse_overrides(
        [
            "kmeans.k=6",
            "input.storage_options.secret=s",
            "output.storage_options.aws_secret_access_key=t",
            "output.storage_options={endpoint_url: http://x, token: u}",
            "input.storage_options.endpoint_url=http://x",
        ]
    )
    plain, credentials = secrets.split_overrides(parsed)
    assert plain == {"kmeans.k": 6, "input.storage_options.endpoint_url": "http://x"}
    assert set(credentials) == {
        "input.storage_options.secret",
        "output.storage_options.aws_secret_access_key",
        "output.storage_options",
    }


def test_provided_credentials_reach_load_config_only_inside_the_block(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: t\ninput: {uri: data/}\noutput: {uri: out/}\n")
    creds = {"input.storage_options.secret": "s", "knn.query.storage_options.key": "k"}
    with secrets.provided(creds):
        cfg = load_config(str(path), {"kmeans.k": 3})
    assert cfg.input.storage_options == {"secret": "s"} and cfg.kmeans.k == 3
    assert cfg.knn.query is None  # no query in the config: its credentials are left out
    assert load_config(str(path)).input.storage_options == {}


def test_a_secret_document_names_sections_never_values():
    assert secrets.from_document('{"input": {"key": "a"}, "knn.query": {"token": "b"}}') == {
        "input.storage_options.key": "a",
        "knn.query.storage_options.token": "b",
    }
    for doc, message in [
        ("not json sentinel-x", r"must hold a JSON object \(not valid JSON\)$"),
        ({"inputs": {"secret": "sentinel-x"}}, r"unknown section 'inputs'; allowed: input,"),
        ({"input": "sentinel-x"}, r"section 'input' must map storage options"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            secrets.from_document(doc)
        assert "sentinel-x" not in str(err.value)


def test_the_flow_refuses_credentials_as_parameters(prefect_harness, tmp_path):
    from flows.segmentation import segmentation

    path = tmp_path / "c.yaml"
    path.write_text(f"name: t\ninput: {{uri: {tmp_path}/in}}\noutput: {{uri: {tmp_path}/out}}\n")
    with pytest.raises(ConfigError, match=r"overrides: input.storage_options.secret carry cred"):
        segmentation(str(path), overrides={"input.storage_options.secret": "x"})
