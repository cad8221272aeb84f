"""Elbow and silhouette plots of a K sweep, and the segment profiles' heatmap, rendered to PNG
bytes (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["elbow_png", "profiles_png", "silhouette_png"]


def _figure(figsize: tuple[float, float] = (7, 4.5)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # a Figure without pyplot: no global state, safe in threads and on workers
    return Figure(figsize=figsize, dpi=110, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def elbow_png(table: pd.DataFrame, knee: float | None, chosen: int) -> bytes:
    """Inertia vs K; the Kneedle knee and the chosen K marked."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(table.k, table.inertia, "o-", color="#1f77b4", label="inertia")
    if knee is not None:
        y = float(table.loc[table.k == knee, "inertia"].iloc[0])
        ax.plot(
            [knee], [y], "s", ms=12, mfc="none", mec="#d62728", mew=2, label=f"knee (K={knee:g})"
        )
    ax.axvline(chosen, color="#2ca02c", ls="--", label=f"chosen K={chosen}")
    ax.set_title("Elbow: within-cluster sum of squares by K (knee: Kneedle on log inertia)")
    ax.set_xlabel("number of clusters K")
    ax.set_ylabel("inertia (sum of squared distances, scaled units)")
    ax.set_xticks(list(table.k))
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def silhouette_png(table: pd.DataFrame, chosen: int) -> bytes:
    """Both silhouettes vs K; the chosen K marked."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(
        table.k,
        table.silhouette_sample,
        "o-",
        color="#1f77b4",
        label="silhouette (Euclidean, stratified sample)",
    )
    ax.plot(
        table.k,
        table.silhouette_full_sq,
        "^-",
        color="#ff7f0e",
        label="silhouette (squared Euclidean, all rows)",
    )
    ax.axvline(chosen, color="#2ca02c", ls="--", label=f"chosen K={chosen}")
    ax.set_title("Silhouette by number of clusters (higher is better)")
    ax.set_xlabel("number of clusters K")
    ax.set_ylabel("mean silhouette coefficient (-1 to 1)")
    ax.set_xticks(list(table.k))
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def profiles_png(z: np.ndarray, segments: Sequence, features: Sequence[str]) -> bytes:
    """Heatmap of standardized segment means (segments x features), diverging colours centred
    at 0: ``z[i, j]`` is segment ``i``'s mean of feature ``j`` minus the overall mean, in
    overall standard deviations (NaN, an empty segment, drawn blank)."""
    z = np.asarray(z, dtype=np.float64)
    n_seg, n_feat = z.shape
    fig = _figure((min(4 + 0.6 * n_feat, 24), min(2 + 0.45 * n_seg, 18)))
    ax = fig.add_subplot()
    finite = z[np.isfinite(z)]
    lim = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-9)
    im = ax.imshow(np.ma.masked_invalid(z), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(n_feat), labels=[str(f) for f in features], rotation=45, ha="right")
    ax.set_yticks(range(n_seg), labels=[str(s) for s in segments])
    if n_seg * n_feat <= 400:  # annotate small tables
        for i in range(n_seg):
            for j in range(n_feat):
                if np.isfinite(z[i, j]):
                    dark = abs(z[i, j]) > 0.6 * lim
                    ax.text(
                        j, i, f"{z[i, j]:+.1f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black", in_layout=False,
                    )  # inside the image: the layout need not measure them
    ax.set_xlabel("feature")
    ax.set_ylabel("segment")
    ax.set_title("Segment profiles: (segment mean - overall mean) / overall std")
    fig.colorbar(im, ax=ax, label="standardized mean (z)")
    return _png(fig)
