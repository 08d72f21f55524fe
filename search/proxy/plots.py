"""The proxy tools' plots, written as PNG files into STUDY_DIR/proxy/."""

from __future__ import annotations

import math
from pathlib import Path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6.4, 4.2), dpi=110)


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, list[dict]], title: str, path: Path, plateau: int | None = None) -> Path:
    """Validation top-1 per epoch of one or more trainings."""
    plt, fig, ax = _figure()
    for label, points in curves.items():
        ax.plot([p["epoch"] for p in points], [p["top1"] for p in points], marker="o", ms=3, label=label)
    if plateau:
        ax.axvline(plateau, color="grey", ls="--", lw=1, label=f"within 1 pt of best at epoch {plateau}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (stage-1 split)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_tau_vs_cost(rows: list[dict], min_tau: float, path: Path) -> Path:
    """Each proxy setting's Kendall tau against the reference, by its cost per trial."""
    plt, fig, ax = _figure()
    for row in rows:
        if math.isnan(row["seconds_per_trial"]) or row["tau"] is None or math.isnan(row["tau"]):
            continue
        color = "tab:green" if row["passes"] else ("tab:red" if row["status"] == "complete" else "tab:grey")
        ax.scatter(row["seconds_per_trial"], row["tau"], color=color)
        ax.annotate(row["label"], (row["seconds_per_trial"], row["tau"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axhline(min_tau, color="grey", ls="--", lw=1, label=f"min tau {min_tau:g}")
    ax.set_xlabel("seconds per trial")
    ax.set_ylabel("Kendall tau vs reference")
    ax.set_title("proxy settings: rank agreement and cost (green: passes; grey: abandoned)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)
