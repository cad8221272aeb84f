"""The read stage: plan the blocks, choose persisted or streamed by the memory budget, check
the data, fit the scaler and standardise the blocks.

Its result, :class:`Prepared`, is what the later stages (sweep, fit, assign, score) share:
one :class:`~kmeans_dask.engine.blocks.BlockSet` of standardised features. Persisted, each
block is read once straight into the working dtype and scaled in place (one copy of the
data on the workers); streamed, every pass reads its blocks again from storage and keeps
nothing but per-row results. The same block recipes serve both, so both give the same
numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
from dask.utils import parse_bytes

from ..engine.blocks import BlockSet
from ..engine.fit import use_bounds
from ..engine.memory import MemoryPlan, bounds_bytes_per_row, plan_memory, worker_memory
from ..engine.minibatch import pool_rate
from ..engine.plan import BLOCK_BYTES_KEY
from ..engine.pool import PoolRequest
from ..engine.prepare import check_blocks
from ..engine.source import Affine, BlockSource, Recipe
from ..io import Dataset, open_dataset
from ..scale import StandardScaler
from ..validation import seed_from
from .config import RunConfig

__all__ = ["Prepared", "read_and_scale"]

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Input planned, checked and standardised as blocks (persisted or streamed)."""

    dataset: Dataset
    blocks: BlockSet  # standardised features (the scaler's output), one block per recipe
    recipes: list[Recipe]  # how each block is read (its units; for ids and targets)
    scaler: StandardScaler | None
    memory: MemoryPlan

    def release(self) -> None:
        """Free the persisted blocks (nothing to do when streamed)."""
        self.blocks.release()


def _n_labellings(config: RunConfig) -> int:
    km = config.kmeans
    return 1 if km.k != "auto" else km.k_max - km.k_min + 1


def _bounds_bytes(config: RunConfig, n_features: int) -> int:
    """Bytes a row of the bounds of the Lloyd runs that keep them at once (every K of a sweep
    may run together)."""
    km = config.kmeans
    ks = range(km.k_min, km.k_max + 1) if km.k == "auto" else [int(km.k)]
    dtype = np.dtype(km.dtype)
    return bounds_bytes_per_row([k for k in ks if use_bounds(km.algorithm, k, n_features, dtype)])


def _pool_request(config: RunConfig, n_rows: int, n_features: int) -> PoolRequest | None:
    """The mini-batch fits' sample pool, to draw in a streamed summary pass (every fit of
    a sweep asks for the same one: the same seed, and the rate of its largest K)."""
    km = config.kmeans
    if km.algorithm != "minibatch":
        return None
    k = km.k_max if km.k == "auto" else int(km.k)
    rate = pool_rate(n_rows, n_features, np.dtype(km.dtype), k, km.batch_size)
    return PoolRequest(seed_from(km.random_state), rate)


def read_and_scale(config: RunConfig, client: Any = None) -> Prepared:
    """Open the input, plan its blocks, choose the mode, check the data, fit the scaler."""
    from ..engine.blocks import get_client

    client = client if client is not None else get_client()
    spec, km = config.input, config.kmeans
    ds = open_dataset(
        spec.uri,
        spec.format,
        spec.columns,
        spec.id_column,
        spec.storage_options or None,
        spec.filters,
    )
    dtype = np.dtype(km.dtype)
    source = BlockSource.from_dataset(ds, dtype, parse_bytes(km.block_bytes))
    with dask.config.set({BLOCK_BYTES_KEY: km.block_bytes}):
        recipes = source.recipes()
    names = ds.info.features
    raw = None
    n_rows = source.n_rows
    sizes = [r.n_rows for r in recipes]
    if n_rows is None:  # CSV or row filters: one streamed pass counts the rows
        raw = BlockSet.from_recipes(
            recipes, len(names), dtype, persist=False, client=client, feature_names=names
        )
        n_rows, sizes = raw.n_samples, raw.sizes
    memory = plan_memory(
        worker_memory(client),
        n_rows=n_rows,
        row_bytes=source.row_bytes,
        block_bytes=max(sizes) * source.row_bytes,
        n_labellings=_n_labellings(config),
        bounds_bytes=_bounds_bytes(config, len(ds.info.features)),
        fraction=km.memory_fraction,
        persist=km.persist,
    )
    logger.info("memory: %s", memory.describe())
    if raw is None or memory.persist:
        raw = BlockSet.from_recipes(
            recipes,
            len(names),
            dtype,
            persist=memory.persist,
            client=client,
            feature_names=names,
            pool=_pool_request(config, n_rows, len(names)),
        )
    try:
        check_blocks(raw, names, "kmeans-dask")
        scaler = None
        blocks = raw
        if config.scaling == "standard":
            n, mean, m2 = raw.moments()
            scaler = StandardScaler.from_moments(n, mean, m2, feature_names=names)
            blocks = raw.scaled(Affine(scaler.mean_, scaler.scale_))
    except Exception:
        raw.release()
        raise
    return Prepared(ds, blocks, recipes, scaler, memory)
