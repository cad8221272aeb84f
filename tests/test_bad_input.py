"""Bad inputs through the real command line.

``kmeans_dask.cli.main(["run", ...])`` runs the Prefect flow (the session's test harness) on
the session's LocalCluster, with real files (local, and the moto S3 server for the bucket and
credential cases). Every case checks the exit code, that the one line the CLI prints names
the thing at fault, that no traceback is printed, and that the output folder, which holds an
earlier committed run, is left exactly as it was (for the two cases that must succeed: the
earlier run's files are unchanged and it stays readable).

| case                            | exit | the message names                        |
|---------------------------------|------|------------------------------------------|
| missing input                   | 2    | the path that does not exist             |
| empty folder                    | 2    | the folder, "no parquet files"           |
| not Parquet                     | 2    | the file                                 |
| corrupt footer                  | 2    | the file                                 |
| column missing in one partition | 2    | the file and the missing column          |
| string feature                  | 2    | the column, "not numeric"                |
| NaN / +inf / -inf               | 2    | the column, the file, the count          |
| constant column                 | 0    | (succeeds)                               |
| fewer rows than K               | 2    | kmeans.k, the row count, the input       |
| fewer distinct rows than K      | 0    | (succeeds with a ConvergenceWarning)     |
| k_min > k_max                   | 2    | the keys and values                      |
| query with other columns        | 2    | the missing column and the query folder  |
| missing bucket (input)          | 2    | the bucket                               |
| wrong credentials (input)       | 1    | the operation, the URI and the bucket    |
| unknown config key              | 2    | the key and the allowed keys             |
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import Store
from sklearn.exceptions import ConvergenceWarning

# Prefect configures its console log handler on the first import of its flow API, binding it
# to the sys.stderr of that moment: import it now, not inside a test that captures stderr
import flows.segmentation  # noqa: F401

FEATURES = ["age", "spend"]


def _customers(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(n)],
            "age": rng.normal(40, 10, n).round(1),
            "spend": rng.gamma(2.0, 50.0, n),
            "city": rng.choice(["x", "y"], n),
        }
    )


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _write(folder: Path, frames: list[pd.DataFrame]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, df in enumerate(frames):
        df.to_parquet(folder / f"part-{i}.parquet", index=False)
    return str(folder)


def _with(values: list[float], column: str = "spend") -> Callable[[Path], str]:
    """Two partitions; the second has ``values`` at the start of ``column``."""

    def build(base: Path) -> str:
        bad = _customers(40, seed=2)
        bad.loc[: len(values) - 1, column] = values
        return _write(base / "in", [_customers(40, seed=1), bad])

    return build


def _footer_corrupt(base: Path) -> str:
    good = _parquet_bytes(_customers(40, seed=2))
    footer_len = int.from_bytes(good[-8:-4], "little")
    start = len(good) - 8 - footer_len
    broken = good[:start] + b"\xff" * footer_len + good[-8:]  # the metadata overwritten
    folder = Path(_write(base / "in", [_customers(40, seed=1)]))
    (folder / "part-1.parquet").write_bytes(broken)
    return str(folder)


def _not_parquet(base: Path) -> str:
    folder = Path(_write(base / "in", [_customers(40, seed=1)]))
    (folder / "part-1.parquet").write_text("customer_id,age,spend\nc1,30,12.5\n")
    return str(folder)


def _empty(base: Path) -> str:
    (base / "in").mkdir(parents=True)
    (base / "in" / "README.txt").write_text("no data yet")
    return str(base / "in")


def _constant(base: Path) -> str:
    frames = [_customers(40, seed=1).assign(spend=7.0), _customers(40, seed=2).assign(spend=7.0)]
    return _write(base / "in", frames)


def _rows(n: int, distinct: int | None = None) -> Callable[[Path], str]:
    def build(base: Path) -> str:
        df = _customers(n, seed=3)
        if distinct is not None:
            df[FEATURES] = df[FEATURES].iloc[np.arange(n) % distinct].to_numpy()
        return _write(base / "in", [df])

    return build


@dataclass
class Case:
    id: str
    data: Callable[[Path], str] | str  # builds the input and returns its uri; "s3": on S3
    overrides: list[str]
    exit: int
    message: str  # a regex the CLI's last stderr line must match
    warns: str | None = None  # a ConvergenceWarning the run must give
    query: Callable[[Path], str] | None = None


CASES = [
    Case("missing input", lambda b: str(b / "nowhere"), [], 2,
         r"input error: \S*/nowhere does not exist \(no such file or folder\)"),
    Case("empty folder", _empty, [], 2,
         r"input error: no parquet files \(.parquet, .parq, .pq\) found at \S*/in"),
    Case("not Parquet", _not_parquet, [], 2,
         r"input error: cannot read Parquet file \S*/in/part-1.parquet \(corrupt"),
    Case("corrupt footer", _footer_corrupt, [], 2,
         r"input error: cannot read Parquet file \S*/in/part-1.parquet \(corrupt"),
    Case("column missing in one partition",
         lambda b: _write(b / "in", [_customers(40, 1), _customers(40, 2).drop(columns="spend")]),
         [], 2, r"input error: schema of \S*/in/part-1.parquet differs .*"
         r"missing columns \['spend'\]"),
    Case("string feature", _rows(40), ["input.columns=[age, city]"], 2,
         r"input error: feature column 'city' in \S*/in has type (large_)?string, which is "
         r"not numeric"),
    Case("NaN", _with([np.nan] * 3), [], 2,
         r"input error: column 'spend' of \S*/in/part-1.parquet has 3 NaN( or null)? value"),
    Case("+inf", _with([np.inf]), [], 2,
         r"input error: column 'spend' of \S*/in/part-1.parquet has 1 \+inf value"),
    Case("-inf", _with([-np.inf] * 2, "age"), [], 2,
         r"input error: column 'age' of \S*/in/part-1.parquet has 2 -inf value"),
    Case("constant column", _constant, [], 0, r"^K = 3 \(fixed\)$"),
    Case("fewer rows than K", _rows(2), [], 2,
         r"input error: kmeans.k=3 is more than the 2 row\(s\) of input \S*/in"),
    Case("fewer distinct rows than K", _rows(30, distinct=2), [], 0, r"^K = 3 \(fixed\)$",
         warns=r"Number of distinct clusters \(2\) found smaller than n_clusters \(3\)"),
    Case("k_min > k_max", _rows(40), ["kmeans.k=auto", "kmeans.k_min=5", "kmeans.k_max=3"], 2,
         r"invalid \S*config.yaml: kmeans.k_min \(5\) must be <= k_max \(3\)"),
    Case("query with other columns", _rows(40),
         ["knn.enabled=true", "knn.n_neighbors=3"], 2,
         r"input error: column\(s\) \['spend'\] not found in \S*/query",
         query=lambda b: _write(b / "query", [_customers(10, 4).drop(columns="spend")])),
    Case("missing bucket", "s3://no-such-bucket-kd/in", [], 2,
         r"input error: s3://no-such-bucket-kd/in: bucket 'no-such-bucket-kd' does not exist"),
    Case("wrong credentials", "s3", [], 1,
         r"storage error: listing s3://test-bucket/\w+/in: access denied \(check the "
         r"credentials for bucket 'test-bucket'; the store said "),
    Case("unknown config key", _rows(40), ["kmeans.kk=3"], 2,
         r"invalid \S*config.yaml: kmeans.kk: unknown key \(check the spelling; allowed under "
         r"kmeans: k, k_min, k_max"),
]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its bytes."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def committed(tmp_path_factory, prefect_harness, _session_client):
    """An output folder holding one committed run, made through the CLI."""
    from kmeans_dask import cli
    from kmeans_dask.io import read_manifest

    base = tmp_path_factory.mktemp("committed")
    data = _write(base / "good", [_customers(60, 1), _customers(60, 2)])
    cfg = _config(base, data, base / "out", _session_client.scheduler.address)
    assert cli.main(["run", str(cfg)]) == 0
    return base / "out", read_manifest(str(base / "out"))["run_id"]


def _config(base: Path, input_uri: str, out: Path, address: str, **input_extra) -> Path:
    data = {
        "name": "bad-input",
        "input": {
            "uri": input_uri,
            "id_column": "customer_id",
            "columns": FEATURES,
            **input_extra,
        },
        "kmeans": {"k": 3, "max_iter": 20},
        "metrics": {"silhouette_sample_size": 100},
        "output": {"uri": str(out)},
        "cluster": {"address": address},
    }
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _input(case: Case, tmp_path: Path, request) -> tuple[str, dict]:
    """The case's input uri and its storage options (the S3 cases use the moto server)."""
    if callable(case.data):
        return case.data(tmp_path), {}
    s3 = request.getfixturevalue("s3")
    if case.data == "s3":
        store = Store(f"s3://test-bucket/{uuid.uuid4().hex[:8]}", s3)
        store.write_parquet("in/part-0.parquet", _customers(40, 1))
        return store.uri("in"), s3
    return case.data, s3


@contextlib.contextmanager
def _credentials_checked(case: Case, request):
    """For the credentials case, the S3 server refuses the test's made-up keys."""
    if case.id != "wrong credentials":
        yield
        return
    import requests

    endpoint = request.getfixturevalue("s3_endpoint")
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
    try:
        yield
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, committed, tmp_path, request, capsys, _session_client):
    from kmeans_dask import cli
    from kmeans_dask.io import read_manifest

    out, run_id = committed
    uri, options = _input(case, tmp_path, request)
    extra = {"storage_options": options} if options else {}
    cfg = _config(tmp_path, uri, out, _session_client.scheduler.address, **extra)
    overrides = [x for o in case.overrides for x in ("--set", o)]
    if case.query is not None:
        overrides += ["--set", f"knn.query.uri={case.query(tmp_path)}"]
    before = _snapshot(out)
    capsys.readouterr()

    warns = (
        pytest.warns(ConvergenceWarning, match=case.warns)
        if case.warns
        else contextlib.nullcontext()
    )
    with _credentials_checked(case, request), warns:
        code = cli.main(["run", str(cfg), *overrides])

    captured = capsys.readouterr()
    assert code == case.exit, captured.err
    assert "Traceback" not in captured.err
    if case.exit == 0:
        assert any(re.search(case.message, line) for line in captured.out.splitlines())
        after = _snapshot(out)
        assert {k: v for k, v in after.items() if k in before and k != "LATEST"} == {
            k: v for k, v in before.items() if k != "LATEST"
        }
    else:
        lines = captured.err.strip().splitlines()
        assert lines[-1].startswith("kmeans-dask: ") and re.search(case.message, lines[-1]), (
            captured.err
        )
        assert _snapshot(out) == before  # nothing written, nothing removed
    assert read_manifest(str(out / run_id))["run_id"] == run_id  # the earlier run is readable


def test_validate_inputs_checks_k_against_the_footers_and_returns_the_fingerprints(tmp_path):
    """The plan-stage check offered to the pipeline (kmeans_dask.job.checks): no Dask, K
    against the row count of the footers, the same fingerprints as io.fingerprint."""
    from kmeans_dask.exceptions import DatasetError
    from kmeans_dask.io import fingerprint
    from kmeans_dask.job.checks import validate_inputs
    from kmeans_dask.job.config import parse_config

    data = _write(tmp_path / "in", [_customers(3, 1), _customers(2, 2)])
    query = _write(tmp_path / "q", [_customers(4, 3)])
    base = {
        "name": "t",
        "input": {"uri": data, "columns": FEATURES},
        "knn": {"enabled": True, "query": {"uri": query}},
        "output": {"uri": str(tmp_path / "out")},
    }
    got = validate_inputs(parse_config({**base, "kmeans": {"k": 5}}))
    assert got == {"input": fingerprint(data), "query": fingerprint(query)}
    for kmeans, key in [({"k": 6}, "kmeans.k=6"), ({"k_min": 2, "k_max": 9}, "kmeans.k_max=9")]:
        with pytest.raises(DatasetError, match=rf"{key} is more than the 5 row\(s\) of input "):
            validate_inputs(parse_config({**base, "kmeans": kmeans}))
    other = _write(tmp_path / "q2", [_customers(4, 3).drop(columns="age")])
    bad_query = {"enabled": True, "query": {"uri": other}}
    with pytest.raises(DatasetError, match=r"column\(s\) \['age'\] not found in \S*/q2"):
        validate_inputs(parse_config({**base, "knn": bad_query, "kmeans": {"k": 2}}))
