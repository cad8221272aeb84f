"""Segment profiles of a run, in the input's units: ``profiles.parquet`` (a tidy table),
``profiles.md`` (a readable summary) and ``profiles.png`` (a heatmap of standardized means).

The statistics come from the assignment pass (:class:`~kmeans_dask.job.outputs.Assigned`:
per-block partials merged on the client); this module only finishes and writes them.

Units and precision: blocks hold standardised features; every value is mapped back to the
input's units in float64 (``x = value * scale + mean``, with the parameters as the blocks
applied them). On float64 data that reproduces the input to within a few units in the last
place. On float32 data (``kmeans.dtype: float32``) the input was rounded to float32 when read
and standardised in float32, so profiles carry float32's relative error (about 1e-7 of each
value's magnitude), not that of the stored values.

Standard deviations use ``ddof=1`` (pandas' default; NaN for a one-row segment). Quantiles are
read from a fixed-bin histogram per segment and feature over the feature's range in the data:
each is within ``quantile_error`` (one bin width, a column of the table) of numpy's exact
(linear interpolation) quantile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..io import RunCommit
from ..kernels.profile import ProfileStats, finalize_profile
from ..kmeans import KMeans
from ..plots import profiles_png
from .outputs import Assigned
from .prepare import Prepared

__all__ = ["SegmentProfiles", "profile_segments", "write_profiles"]

#: files written in the run folder
PROFILES_TABLE = "profiles.parquet"
PROFILES_MARKDOWN = "profiles.md"
PROFILES_PLOT = "profiles.png"


@dataclass
class SegmentProfiles:
    """The finished profiles of a run's segments.

    Parameters
    ----------
    stats : ProfileStats
        Sizes, shares, means, standard deviations, quantiles and z, rows sorted by segment ID.
    features : list of str
        Feature names, in column order.
    centroids : ndarray of shape (K, d)
        The centroids in original units, rows in ``stats.ids`` order.
    bins : int
        Histogram bins per feature (the quantiles' resolution).
    """

    stats: ProfileStats
    features: list[str]
    centroids: np.ndarray
    bins: int

    def table(self) -> pd.DataFrame:
        """One row per segment and feature (tidy), segments in ID order.

        Columns: ``segment, size, share, feature, mean, std, min, q05 ... q95, max,
        centroid, z, rank`` (1 = the feature with the largest ``|z|`` in its segment),
        ``overall_mean, overall_std, quantile_error`` (the quantiles' error bound).
        """
        st = self.stats
        K, d = st.mean.shape
        out = {
            "segment": np.repeat(st.ids, d).astype(np.int64),
            "size": np.repeat(st.size, d).astype(np.int64),
            "share": np.repeat(st.share, d),
            "feature": np.tile(np.asarray(self.features, dtype=object), K),
            "mean": st.mean.ravel(),
            "std": st.std.ravel(),
            "min": st.vmin.ravel(),
        }
        for j, q in enumerate(st.q):
            out[_qname(q)] = st.quantiles[:, :, j].ravel()
        out["max"] = st.vmax.ravel()
        out["centroid"] = self.centroids.ravel()
        out["z"] = st.z.ravel()
        out["rank"] = _ranks(st.z).ravel()
        out["overall_mean"] = np.tile(st.overall_mean, K)
        out["overall_std"] = np.tile(st.overall_std, K)
        out["quantile_error"] = np.tile(st.width, K)
        return pd.DataFrame(out)

    def markdown(self, top: int = 3) -> str:
        """A readable summary: per segment its size, share and the ``top`` features that
        most set it apart (its mean vs the overall mean, z), then the means per segment."""
        st = self.stats
        n = int(st.size.sum())
        lines = [
            "## Segment profiles",
            "",
            f"{n:,} rows in {len(st.ids)} segments. Means in the input's units; "
            "z = (segment mean - overall mean) / overall standard deviation.",
            "",
            "| segment | size | share | most distinctive features: mean vs overall (z) |",
            "|---:|---:|---:|---|",
        ]
        ranks = _ranks(st.z)
        for i, seg in enumerate(st.ids):
            picks = [j for j in np.argsort(ranks[i]) if ranks[i, j] <= top]
            text = "; ".join(
                f"{self.features[j]} {_fmt(st.mean[i, j])} vs {_fmt(st.overall_mean[j])} "
                f"({st.z[i, j]:+.2f})"
                for j in picks
                if np.isfinite(st.z[i, j])
            )
            lines.append(
                f"| {seg} | {int(st.size[i]):,} | {100 * st.share[i]:.1f}% | {text or '-'} |"
            )
        lines += [
            "",
            "### Mean of each feature by segment",
            "",
            "| segment | " + " | ".join(self.features) + " |",
            "|---:|" + "---:|" * len(self.features),
        ]
        for i, seg in enumerate(st.ids):
            lines.append(f"| {seg} | " + " | ".join(_fmt(v) for v in st.mean[i]) + " |")
        lines.append("| overall | " + " | ".join(_fmt(v) for v in st.overall_mean) + " |")
        lines += [
            "",
            "Standard deviations and quantiles (5%, 25%, 50%, 75%, 95%; each within one "
            f"histogram bin, 1/{self.bins} of the feature's range) are in `{PROFILES_TABLE}`.",
            "",
        ]
        return "\n".join(lines)

    def png(self) -> bytes:
        """The heatmap of standardized means (segments x features)."""
        return profiles_png(self.stats.z, list(self.stats.ids), self.features)


def _qname(q: float) -> str:
    return f"q{round(100 * q):02d}"


def _ranks(z: np.ndarray) -> np.ndarray:
    """Rank of each feature within its segment by ``|z|`` (1 = largest; NaN last)."""
    key = np.where(np.isfinite(z), -np.abs(z), np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, z.shape[1] + 1)[None, :], axis=1)
    return ranks


def _fmt(v: float) -> str:
    """A number for people: thousands separated, about four significant digits."""
    if not np.isfinite(v):
        return "-"
    a = abs(v)
    if a >= 1e4:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:,.1f}"
    return f"{v:.4g}"


def profile_segments(
    assigned: Assigned,
    model: KMeans,
    prepared: Prepared,
    ids: Sequence[int] | np.ndarray | None = None,
) -> SegmentProfiles:
    """Finish the profiles of the assignment pass.

    Parameters
    ----------
    assigned : Assigned
        The assignment pass's merged partial and binning.
    model : KMeans
        The fitted model (centres in the scaled space).
    prepared : Prepared
        The read stage (its scaler maps the centres back; its dataset names the features).
    ids : array-like of shape (K,), optional
        Segment ID of each raw cluster index (default ``0..K-1``).

    Returns
    -------
    SegmentProfiles
    """
    K = len(model.cluster_centers_)
    ids = np.arange(K) if ids is None else np.asarray(ids)
    stats = finalize_profile(assigned.profile, assigned.binning, ids)
    centres = np.asarray(model.cluster_centers_, dtype=np.float64)
    sc = prepared.scaler
    if sc is not None:
        centres = centres * np.asarray(sc.scale_, np.float64) + np.asarray(sc.mean_, np.float64)
    order = np.argsort(ids, kind="stable")
    features = list(prepared.dataset.info.features)
    return SegmentProfiles(stats, features, centres[order], assigned.binning.bins)


def write_profiles(
    run: RunCommit,
    prepared: Prepared,
    model: KMeans,
    assigned: Assigned,
    ids: Sequence[int] | np.ndarray | None = None,
) -> SegmentProfiles:
    """Write ``profiles.parquet``, ``profiles.md`` and ``profiles.png`` into the run's
    attempt (see :func:`profile_segments` for the arguments)."""
    profiles = profile_segments(assigned, model, prepared, ids)
    run.write_table(PROFILES_TABLE, profiles.table())
    run.write_bytes(PROFILES_MARKDOWN, profiles.markdown().encode())
    run.write_bytes(PROFILES_PLOT, profiles.png())
    return profiles
