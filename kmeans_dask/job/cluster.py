"""Where the job's Dask work runs: an existing cluster (``cluster.address``, or
``DASK_SCHEDULER_ADDRESS``), optionally over mutual TLS (``cluster.security``), or an embedded
``LocalCluster``.

On an existing cluster the client sends only the graph: every worker reads its partitions
from storage itself, with the config's ``storage_options`` and the credentials of its own
environment. Connecting is bounded by ``cluster.timeout``: an unreachable scheduler, or one
without workers, is an error naming the address and what to check, never a silent wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from ..engine.workers import worker_settings
from ..exceptions import ConfigError, KMeansDaskError
from .config import ClusterSpec, RunConfig

__all__ = ["ClusterUnavailableError", "connect", "security_for"]

logger = logging.getLogger(__name__)


class ClusterUnavailableError(KMeansDaskError, ConnectionError):
    """The Dask scheduler of ``cluster.address`` did not answer, or has no workers, within
    ``cluster.timeout``; the message names the address and what to check."""


def scheduler_address(spec: ClusterSpec) -> str | None:
    """``cluster.address``, else ``DASK_SCHEDULER_ADDRESS``, else None (embedded)."""
    return spec.address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def security_for(spec: ClusterSpec, address: str) -> Any:
    """The ``distributed.security.Security`` for ``address``: from ``cluster.security`` for a
    ``tls://`` address (encryption required), else dask's own ``distributed.comm.tls.*``
    configuration for a ``tls://`` address, else None."""
    tls = address.startswith("tls://")
    if spec.security is None:
        if tls:
            from distributed.security import Security

            configured = Security()  # dask's distributed.comm.tls.* settings, if any
            if not (configured.tls_ca_file and configured.tls_client_cert):
                raise ConfigError(
                    f"cluster.security: required for the tls:// scheduler {address}; give "
                    "{ca_file, cert, key} (PEM files) or dask's distributed.comm.tls.* settings"
                )
            return configured
        return None
    if not tls:
        raise ConfigError(
            f"cluster.security: certificates need a tls:// scheduler address; got {address} "
            "(start the scheduler with --tls-ca-file/--tls-cert/--tls-key and use tls://host:port)"
        )
    from distributed.security import Security

    sec = spec.security
    return Security(
        tls_ca_file=sec.ca_file,
        tls_client_cert=sec.cert,
        tls_client_key=sec.key,
        require_encryption=True,
    )


def _unreachable(address: str, timeout: float, exc: BaseException) -> ClusterUnavailableError:
    hint = (
        "check that the scheduler is running (`dask scheduler`), that host and port are "
        "reachable from this machine (firewall, DNS), and that the protocol matches"
    )
    if address.startswith("tls://"):
        hint += " (tls://: the certificates of cluster.security must be signed by the CA the "
        hint += "scheduler trusts)"
    else:
        hint += " (a TLS scheduler needs tls:// and cluster.security)"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ClusterUnavailableError(
        f"cluster.address {address}: no Dask scheduler answered within {timeout:g} s "
        f"({reason}); {hint}; cluster.timeout sets the wait"
    )


@contextlib.contextmanager
def _external(spec: ClusterSpec, address: str) -> Iterator[Any]:
    from distributed import Client

    security = security_for(spec, address)
    timeout = float(spec.timeout)
    try:
        client = Client(address, security=security, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise _unreachable(address, timeout, exc) from exc
    with client:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailableError(
                f"cluster.address {address}: the scheduler has no workers after {timeout:g} s; "
                f"start workers (`dask worker {address}`) or raise cluster.timeout"
            ) from exc
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        logger.info("connected to Dask scheduler %s (%d workers)", address, n)
        yield client


@contextlib.contextmanager
def _embedded(spec: ClusterSpec) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    n_workers = spec.n_workers or max(1, os.cpu_count() or 1)
    with worker_settings():  # read by the nannies as they are made, not after
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            memory_limit=spec.memory_limit,
            dashboard_address=":0",
        )
    with cluster, Client(cluster) as client:
        logger.info(
            "embedded LocalCluster: %d workers; dashboard %s", n_workers, client.dashboard_link
        )
        yield client


@contextlib.contextmanager
def connect(config: RunConfig) -> Iterator[Any]:
    """A distributed Client: ``cluster.address`` (or ``DASK_SCHEDULER_ADDRESS``) when set,
    with ``cluster.security`` for a ``tls://`` address, else an embedded LocalCluster (one
    worker process per core by default).

    Raises
    ------
    ClusterUnavailableError
        The scheduler did not answer, or had no worker, within ``cluster.timeout`` seconds.
    ConfigError
        ``cluster.security`` was given for an address that is not ``tls://``, or is missing
        for one that is (and dask's configuration has no certificates either).
    """
    spec = config.cluster
    address = scheduler_address(spec)
    ctx = _external(spec, address) if address else _embedded(spec)
    with ctx as client:
        yield client
