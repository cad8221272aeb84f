"""Seeded synthetic segment data generated chunk by chunk on the workers."""

from __future__ import annotations

import dask.array as da
import numpy as np

__all__ = ["make_blobs"]


def _blob_chunk(
    block_id: tuple[int, ...],
    sizes: tuple[int, ...],
    centres: np.ndarray,
    cluster_std: float,
    seed: int,
    out_dtype: np.dtype,
) -> np.ndarray:
    i = block_id[0]
    rng = np.random.default_rng([seed, i])  # one deterministic stream per chunk
    n = sizes[i]
    y = rng.integers(0, centres.shape[0], size=n)
    X = centres[y] + rng.normal(scale=cluster_std, size=(n, centres.shape[1]))
    return np.column_stack([X, y]).astype(out_dtype)


def _separated_centres(
    k: int, d: int, box: float, min_gap: float, seed: int, attempts: int = 200
) -> np.ndarray:
    """Centres drawn uniformly in the box, redrawn (seeded) until every pair is at least
    ``min_gap`` apart, so that the true segments are recoverable; best effort when the box
    is too small."""
    rng = np.random.default_rng([seed, 1 << 30])
    best, best_gap = None, -1.0
    for _ in range(attempts):
        c = rng.uniform(-box, box, size=(k, d))
        gap = np.inf
        if k > 1:
            dist = np.linalg.norm(c[:, None] - c[None], axis=-1)
            gap = dist[np.triu_indices(k, 1)].min()
        if gap > best_gap:
            best, best_gap = c, gap
        if gap >= min_gap:
            break
    return best


def make_blobs(
    n_samples: int = 1_000_000,
    n_features: int = 16,
    centers: int = 8,
    cluster_std: float = 1.0,
    center_box: float = 10.0,
    chunk_rows: int = 250_000,
    random_state: int = 0,
    dtype: type = np.float64,
) -> tuple[da.Array, da.Array, np.ndarray]:
    """Isotropic Gaussian blobs as dask arrays, generated on the workers.

    Centres are at least ``8 * cluster_std`` apart when the box allows it. Each chunk
    draws from its own stream seeded by ``(random_state, chunk index)``, so the
    data is the same whatever the scheduler, and no chunk is ever built on the client.

    Returns
    -------
    X : dask array of shape (n_samples, n_features)
    y : dask array of shape (n_samples,), int64 — the true blob of every row
    centres : ndarray of shape (centers, n_features)
    """
    centres = _separated_centres(centers, n_features, center_box, 8.0 * cluster_std, random_state)
    sizes = tuple(min(chunk_rows, n_samples - s) for s in range(0, n_samples, chunk_rows)) or (0,)
    full = da.map_blocks(
        _blob_chunk,
        sizes=sizes,
        centres=centres,
        cluster_std=cluster_std,
        seed=random_state,
        out_dtype=np.dtype(dtype),
        chunks=(sizes, (n_features + 1,)),
        dtype=np.dtype(dtype),
        meta=np.empty((0, 0), dtype=dtype),
    )
    return full[:, :n_features], full[:, n_features].astype(np.int64), centres
