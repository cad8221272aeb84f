"""Settings of the Dask worker processes the kernels are measured with: glibc's allocator.

distributed starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (its config
``distributed.nanny.pre-spawn-environ``), so that freed memory goes back to the system at
once. Setting that variable also freezes glibc's mmap threshold at 128 KiB: then every
temporary array above 128 KiB is a fresh ``mmap``, zeroed and faulted in page by page on
first touch (and numpy asks for transparent huge pages on arrays of 4 MiB and more, which
this kind of VM compacts on every fault), then unmapped on free. A kernel that allocates
its per-slab buffers (the pruned KNN search: bounds of 4,096 queries x the clusters,
up to 4 MiB each) pays that on every slab: measured here, one (10,000 query x 250,000 row)
pair 0.32 s in a plain process, 0.37 s with the workers' setting, 0.32-0.33 s with the
thresholds below.

:data:`WORKER_ENV` keeps allocations below 4 MiB on the heap, where freed memory is reused,
and returns the top of the heap to the system once more than 32 MiB of it is free (below
that, each slab's buffers were handed back and faulted in again). Larger arrays (blocks,
row groups being read) are still mapped and unmapped on their own: with a 32 MiB mmap
threshold the reader's row-group buffers fragmented the heap, and a persisted 16M-row job
peaked at 1.48x the data held per worker instead of 1.14-1.24x (``bench_scale.py``).

The job's embedded cluster uses it; give the same variables to ``dask worker`` processes of
an existing cluster (``deploy/dask/kmeans-dask.yaml``), or make your own ``LocalCluster``
under :func:`worker_settings`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask

__all__ = ["WORKER_ENV", "worker_settings"]

_KEY = "distributed.nanny.pre-spawn-environ"
#: distributed's own default, which :func:`worker_settings` replaces (any other value was
#: chosen by the user and is kept)
_DASK_TRIM = 65536

#: Environment of the worker processes (set before they start: glibc reads it once).
WORKER_ENV = {"MALLOC_TRIM_THRESHOLD_": 32 << 20, "MALLOC_MMAP_THRESHOLD_": 4 << 20}


@contextlib.contextmanager
def worker_settings() -> Iterator[dict[str, object]]:
    """Dask config under which the nannies made inside the block (a ``LocalCluster``) give
    their workers :data:`WORKER_ENV`, then and on every restart.

    A nanny reads the setting when it is made, so the block need only cover the cluster's
    construction (``with worker_settings(): cluster = LocalCluster(...)``); the config is
    restored on leaving. Variables the user set in ``distributed.nanny.pre-spawn-environ``
    are kept (except distributed's default trim threshold, which this replaces).

    Yields
    ------
    dict
        The worker environment in effect inside the block.
    """
    import distributed  # noqa: F401  (loads distributed's defaults of the key first)

    env = dict(dask.config.get(_KEY, {}) or {})
    for name, value in WORKER_ENV.items():
        current = env.get(name)
        if current is None or (name == "MALLOC_TRIM_THRESHOLD_" and int(current) == _DASK_TRIM):
            env[name] = value
    with dask.config.set({_KEY: env}):
        yield env
