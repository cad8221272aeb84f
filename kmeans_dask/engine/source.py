"""Blocks defined by how to read them: the recipe of each block, for persisting or streaming.

A :class:`BlockSource` describes a dataset as consecutive *read units* (Parquet row groups,
files) and a picklable ``reader`` that turns a list of units into a feature array (the I/O
layer provides both; this module never touches storage). :meth:`BlockSource.recipes` groups
the units into blocks with :func:`~kmeans_dask.engine.plan.plan_units` (from the data only),
and each :class:`Recipe` materialises one block on a worker: read, cast to the working dtype,
optionally standardise in place. The same recipe gives the same block whether it is loaded
once and persisted or loaded again on every pass (streaming), which is what makes the two
modes bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .block import Block, make_block
from .plan import plan_units, target_block_bytes

__all__ = ["Affine", "BlockSource", "Recipe"]


@dataclass(frozen=True)
class Affine:
    """``(x - mean) / scale`` per column, in the block's dtype (what
    :meth:`kmeans_dask.StandardScaler.transform` computes, element for element)."""

    mean: np.ndarray
    scale: np.ndarray

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Standardise ``X`` in place (no temporary the size of ``X``)."""
        np.subtract(X, self.mean.astype(X.dtype), out=X)
        np.divide(X, self.scale.astype(X.dtype), out=X)
        return X


@dataclass(frozen=True)
class Recipe:
    """How to materialise one block: ``reader(units, transform)`` (read, cast, standardise).

    Small and picklable: it travels with every task of a streamed pass.
    """

    reader: Callable[[Sequence[Any]], Any]
    units: tuple
    dtype: str
    n_rows: int | None
    transform: Affine | None = None

    def load(self) -> Block:
        """Read and build the block (runs on a worker). The reader standardises the rows as
        it fills them (element-wise, in the block's dtype: the same values as
        :meth:`Affine.apply` on the whole block, without a second pass over it)."""
        apply = None if self.transform is None else self.transform.apply
        X, unit_rows = self.reader(self.units, apply)
        block = make_block(X, None, np.dtype(self.dtype))
        del X  # (make_block copies only when the reader's array is not C-ordered)
        return Block(block.X, None, None, tuple(int(r) for r in unit_rows))

    def scaled(self, transform: Affine | None) -> Recipe:
        """The same block, standardised by ``transform``."""
        return replace(self, transform=transform)


@dataclass(frozen=True)
class BlockSource:
    """A dataset as read units plus the reader of a list of units.

    Parameters
    ----------
    reader : callable
        ``reader(units, transform) -> (array of shape (rows, n_features), rows of each
        unit)`` in the working dtype, with ``transform`` (None, or an in-place element-wise
        function) applied to the rows (picklable; runs on the workers and raises errors that
        name the file and column).
    units : sequence
        Opaque, picklable descriptions of consecutive pieces of the data, in row order.
    unit_rows : sequence of int or None
        Rows of each unit when known (Parquet footers), else None.
    unit_bytes : sequence of int
        Stored bytes of each unit (sizes the blocks when rows are unknown).
    dtype : numpy dtype
        The working dtype (float32 or float64).
    feature_names : list of str
    """

    reader: Callable[[Sequence[Any]], Any]
    units: Sequence[Any]
    unit_rows: Sequence[int | None]
    unit_bytes: Sequence[int]
    dtype: np.dtype
    feature_names: list[str]

    @classmethod
    def from_dataset(cls, ds: Any, dtype: Any, max_unit_bytes: int | None = None) -> BlockSource:
        """The source of an opened dataset (``kmeans_dask.io.open_dataset``) read as
        ``dtype``, its units at most ``max_unit_bytes`` each where they can be split."""
        reader, units = ds.read_units(np.dtype(dtype), max_unit_bytes)
        return cls(
            reader,
            units,
            [u.n_rows for u in units],
            [u.nbytes for u in units],
            np.dtype(dtype),
            ds.info.features,
        )

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self.feature_names)

    @property
    def n_rows(self) -> int | None:
        """Total rows when every unit's count is known, else None."""
        if any(r is None for r in self.unit_rows):
            return None
        return int(sum(self.unit_rows))

    @property
    def row_bytes(self) -> int:
        """Bytes of one row in the working dtype."""
        return self.n_features * np.dtype(self.dtype).itemsize

    def recipes(self, target: int | None = None) -> list[Recipe]:
        """One recipe per block: consecutive units grouped to about ``target`` bytes
        (default ``kmeans_dask.block-bytes``), from the data only."""
        target = target or target_block_bytes() or (1 << 62)
        groups = plan_units(self.unit_rows, self.unit_bytes, self.row_bytes, target)
        out = []
        for g in groups:
            rows = [self.unit_rows[i] for i in g]
            n = None if any(r is None for r in rows) else int(sum(rows))
            out.append(
                Recipe(self.reader, tuple(self.units[i] for i in g), np.dtype(self.dtype).str, n)
            )
        return out
