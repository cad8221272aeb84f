"""Elbow and silhouette plots of a K sweep, rendered to PNG bytes (matplotlib, Agg)."""

from __future__ import annotations

import io

import pandas as pd

__all__ = ["elbow_png", "silhouette_png"]


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # a Figure without pyplot: no global state, safe in threads and on workers
    return Figure(figsize=(7, 4.5), dpi=110, layout="constrained")


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
