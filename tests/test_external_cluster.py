"""The job on an existing Dask cluster, the way users run one: a `dask scheduler` and two
`dask worker` processes (the command-line tools of distributed) on 127.0.0.1, plain TCP and
mutual TLS with a CA and certificates made here. Same results as the embedded LocalCluster,
bit for bit; the workers read the input from the S3 server themselves."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import s3fs
from _processes import ROOT, Processes, environment, executable, processes
from conftest import Store
from distributed import Client

from kmeans_dask import cli
from kmeans_dask.engine.workers import WORKER_ENV
from kmeans_dask.exceptions import ConfigError
from kmeans_dask.job.cluster import ClusterUnavailableError
from kmeans_dask.job.config import parse_config
from kmeans_dask.job.demo import DEMO_FEATURES, make_customers
from kmeans_dask.job.pipeline import run

N, NQ, PARTS = 4000, 300, 4
SILHOUETTE_SAMPLE = 600
BUCKET = "external-cluster"

#: the dask config shipped for `dask worker` processes (in the image's /etc/dask)
DEPLOY_DASK = ROOT / "deploy" / "dask"


@pytest.fixture(scope="module")
def data(s3_endpoint):
    """Customers and new customers on the S3 server (this module's own bucket) and the
    config of a job on them (the cluster left to each test)."""
    requests.post(f"{s3_endpoint}/moto-api/reset", timeout=10)
    s3fs.S3FileSystem.clear_instance_cache()
    opts = {"endpoint_url": s3_endpoint}
    s3fs.S3FileSystem(**opts).mkdir(BUCKET)
    store = Store(f"s3://{BUCKET}/job", opts)
    df, _ = make_customers(N, seed=11)
    q, _ = make_customers(NQ, seed=12, offset=N)
    store.write_partitioned("in/customers", df, PARTS)
    store.write_partitioned("in/new", q, 2)
    config = {
        "name": "external",
        "input": {
            "uri": store.uri("in/customers"),
            "id_column": "customer_id",
            "columns": DEMO_FEATURES,
            "storage_options": opts,
        },
        "kmeans": {"k": "auto", "k_min": 4, "k_max": 5, "select": "elbow", "random_state": 4},
        "metrics": {"silhouette_sample_size": SILHOUETTE_SAMPLE},
        "knn": {
            "enabled": True,
            "n_neighbors": 5,
            "query": {
                "uri": store.uri("in/new"),
                "id_column": "customer_id",
                "storage_options": opts,
            },
        },
        "output": {"uri": store.uri("out-embedded"), "storage_options": opts},
    }
    yield store, config
    s3fs.S3FileSystem.clear_instance_cache()


def _config(data, output: str, cluster: dict):
    store, base = data
    return parse_config(
        {**base, "output": {**base["output"], "uri": store.uri(output)}, "cluster": cluster}
    )


def _results(store: Store, result) -> dict:
    """What a committed run holds: metrics, centroids, assignments and scores."""
    return {
        "k": result.k,
        "metrics": result.metrics,
        "sweep": [  # without the seconds each fit took
            {k: v for k, v in row.items() if not k.endswith("_seconds")} for row in result.sweep
        ],
        "centroids": store.read_folder(result.results_uri, "model"),
        "assignments": store.read_folder(result.results_uri, "assignments"),
        "scores": store.read_folder(result.results_uri, "scores"),
    }


@pytest.fixture(scope="module")
def embedded(data):
    """The job on the embedded LocalCluster (no cluster.address): the reference."""
    store, _ = data
    result = run(_config(data, "out-embedded", {"n_workers": 2, "memory_limit": "1GiB"}))
    assert not result.skipped and result.k is not None
    return _results(store, result)


def _assert_same(got: dict, want: dict) -> None:
    assert got["k"] == want["k"]
    assert got["metrics"] == want["metrics"]  # inertia, silhouettes, ... exactly
    assert got["sweep"] == want["sweep"]
    for table in ("centroids", "assignments", "scores"):
        pd.testing.assert_frame_equal(got[table], want[table], check_exact=True)


# --------------------------------------------------------------------------- the cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: loaded by each `dask worker` (--preload): every partition read on the worker is logged
READ_LOG = """
import functools
import kmeans_dask.io.parts as parts

# every partition read goes through read_table_part (frames, column arrays) or
# iter_table_part (row-major blocks); the nanny and its worker may both run this file, in
# one module namespace: wrap once
if not hasattr(parts, "_unlogged"):
    parts._unlogged = {}

    def _logged(name):
        func = parts._unlogged[name] = getattr(parts, name)

        @functools.wraps(func)
        def logged(fs, part, *args, **kwargs):
            print(f"kmeans-dask-test: read {part.path}", flush=True)
            return func(fs, part, *args, **kwargs)

        setattr(parts, name, logged)

    _logged("read_table_part")
    _logged("iter_table_part")
"""


def _start_cluster(procs: Processes, tmp: Path, tls: dict[str, Path] | None = None) -> str:
    """`dask scheduler` + two `dask worker` (1 thread, 1 GiB each, every partition read
    logged); returns the address."""
    dask = executable("dask")
    preload = tmp / "kmeans_dask_test_read_log.py"
    preload.write_text(READ_LOG)
    sched_file = tmp / "scheduler.json"

    def tls_args(role: str) -> list[str]:
        if tls is None:
            return []
        return ["--tls-ca-file", str(tls["ca"]), "--tls-cert", str(tls[f"{role}.pem"]),
                "--tls-key", str(tls[f"{role}.key"])]

    scheduler = procs.start(
        "dask-scheduler",
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--protocol", "tls" if tls else "tcp", "--scheduler-file", str(sched_file),
         "--idle-timeout", "300",  # a safety net should this test run itself be killed
         *tls_args("scheduler")],
        env=environment(),
    )
    procs.wait_for("the scheduler's address", lambda: json.loads(sched_file.read_text())
                   ["address"], timeout=60, watch=scheduler)
    address = json.loads(sched_file.read_text())["address"]
    for i in range(2):
        procs.start(
            f"dask-worker-{i}",
            [dask, "worker", address, "--name", f"ext-{i}", "--nthreads", "1",
             "--nworkers", "1", "--memory-limit", "1GiB", "--no-dashboard",
             "--host", "127.0.0.1", "--local-directory", str(tmp / f"worker-{i}"),
             "--death-timeout", "60", "--preload", str(preload), *tls_args("worker")],
            env=_worker_environment(),
        )
    return address


def _worker_environment() -> dict[str, str]:
    # the shipped dask config of deploy/dask (as the image has it in /etc/dask); none of the
    # allocator variables this process may carry (a nanny here leaks its own into it)
    env = environment(DASK_CONFIG=str(DEPLOY_DASK))
    for name in WORKER_ENV:
        env.pop(name, None)
    return env


def _wait_for_workers(procs: Processes, address: str, security=None) -> dict:
    with Client(address, security=security, timeout=30, set_as_default=False) as c:
        procs.wait_for("two workers", lambda: len(c.scheduler_info()["workers"]) == 2,
                       timeout=60)
        # the shipped worker settings reached the worker processes (distributed's own
        # default would have set the trim threshold to 65536)
        envs = c.run(lambda: {n: os.environ.get(n) for n in WORKER_ENV})
        assert list(envs.values()) == [{n: str(v) for n, v in WORKER_ENV.items()}] * 2, envs
        return c.scheduler_info()["workers"]


@pytest.fixture
def procs(tmp_path):
    with processes(tmp_path / "logs") as p:
        yield p


# --------------------------------------------------------------------------- tests


def test_existing_cluster_gives_the_embedded_results_and_workers_read_the_data(
    data, embedded, procs, tmp_path, monkeypatch
):
    store, _ = data
    address = _start_cluster(procs, tmp_path)
    _wait_for_workers(procs, address)

    # everything the client scatters is recorded: only small things (centroids, samples)
    scattered: list[int] = []
    original = Client.scatter

    def recording_scatter(self, data, *args, **kwargs):
        from dask.sizeof import sizeof

        scattered.append(sizeof(data))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Client, "scatter", recording_scatter)
    config = _config(data, "out-external", {"address": address, "timeout": 30})
    result = run(config)
    assert not result.skipped
    _assert_same(_results(store, result), embedded)

    # every partition of the input and the query was read by a worker, from storage
    logs = procs.output("dask-worker-0") + procs.output("dask-worker-1")
    fs = store.fs
    for folder in ("in/customers", "in/new"):
        for path in fs.find(store.uri(folder)):
            assert f"read {path}" in logs, (path, logs[-3000:])
    # and the client shipped no data: all it scattered is the silhouette sample (rows and
    # labels), never the input
    sample = SILHOUETTE_SAMPLE * (len(DEMO_FEATURES) + 1) * 8
    assert sum(scattered) <= 1.5 * sample < N * len(DEMO_FEATURES) * 8, scattered


def _tls_files(folder: Path) -> dict[str, Path]:
    """A CA and certificates signed by it for the scheduler, the workers and the client."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    folder.mkdir(parents=True, exist_ok=True)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def usage(ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=not ca,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("kmeans-dask test CA"))
        .issuer_name(name("kmeans-dask test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for role in ("scheduler", "worker", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"kmeans-dask test {role}"))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                       ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files[f"{role}.pem"] = folder / f"{role}.pem"
        files[f"{role}.key"] = folder / f"{role}.key"
        files[f"{role}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[f"{role}.key"].chmod(0o600)
    return files


def test_existing_cluster_over_mutual_tls(data, embedded, procs, tmp_path):
    from distributed.security import Security

    store, _ = data
    tls = _tls_files(tmp_path / "tls")
    address = _start_cluster(procs, tmp_path, tls=tls)
    assert address.startswith("tls://")
    _wait_for_workers(
        procs,
        address,
        Security(tls_ca_file=str(tls["ca"]), tls_client_cert=str(tls["client.pem"]),
                 tls_client_key=str(tls["client.key"]), require_encryption=True),
    )
    security = {"ca_file": str(tls["ca"]), "cert": str(tls["client.pem"]),
                "key": str(tls["client.key"])}
    result = run(_config(data, "out-tls", {"address": address, "security": security}))
    assert not result.skipped
    _assert_same(_results(store, result), embedded)

    # a tls:// address without certificates: a config error before anything connects
    with pytest.raises(ConfigError, match=r"cluster.security: required for the tls:// sched"):
        run(_config(data, "out-tls-refused", {"address": address}))
    # the TLS scheduler addressed as tcp:// does not answer: an error within the timeout
    t0 = time.monotonic()
    plain = address.replace("tls://", "tcp://")
    with pytest.raises(ClusterUnavailableError, match=f"cluster.address {plain}: no Dask"):
        run(_config(data, "out-tls-refused", {"address": plain, "timeout": 2}))
    assert time.monotonic() - t0 < 30


def test_unreachable_scheduler_fails_at_once_naming_the_address(data, tmp_path, capsys):
    """Nothing listens on the port: exit 1 and one line naming the address and what to
    check, within the timeout; nothing is committed."""
    import yaml

    store, base = data
    port = _free_port()
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({**base, "output": {**base["output"],
                                                      "uri": store.uri("out-unreachable")}}))
    t0 = time.monotonic()
    code = cli.main(["run", str(cfg), "--no-prefect", "--set",
                     f"cluster.address=tcp://127.0.0.1:{port}", "--set", "cluster.timeout=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert time.monotonic() - t0 < 30
    [line] = [e for e in err if e.startswith("kmeans-dask:")]
    assert f"tcp://127.0.0.1:{port}" in line and "no Dask scheduler answered within 2 s" in line
    assert "check that the scheduler is running" in line
    fs = store.fs
    fs.invalidate_cache()
    assert not fs.exists(store.uri("out-unreachable"))
