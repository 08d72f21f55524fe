"""``mnas report DIR``: plots and one self-contained HTML page in DIR/report/.

Works on a finished search and on one that was killed halfway (it reads only the store).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mnas.arch import Architecture  # noqa: E402
from search.analysis import advice, load_config_of, load_trials, pareto_front, search_curve  # noqa: E402

PLOTS = ("search_curve", "accuracy_latency", "latency_histogram", "memory_latency", "failures")


def _save(fig, path: Path) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def plot_search_curve(df, out: Path) -> bytes:
    curve = search_curve(df)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    ax.scatter(curve.order, curve.reward, s=10, alpha=0.6, label="trial reward")
    ax.plot(curve.order, curve.best, color="C3", label="running best")
    ax.plot(curve.order, curve.rolling_mean, color="C2", label="rolling mean (20)")
    ax.set_ylabel("reward")
    ax.legend(loc="lower right")
    ax.set_title("Search curve")
    ax2.plot(curve.order, curve.rolling_var, color="C4")
    ax2.set_ylabel("rolling variance")
    ax2.set_xlabel("finished trials")
    return _save(fig, out)


def plot_accuracy_latency(df, target_ms: float, hard: bool, out: Path) -> bytes:
    done = df[(df.stage == 1) & (df.status == "succeeded") & (~df.cached)]
    front = pareto_front(df)
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter(done.latency_ms, done.accuracy, s=12, alpha=0.5, label="trials")
    ax.plot(front.latency_ms, front.accuracy, "o-", color="C3", label="Pareto front")
    if hard:  # hard constraint: everything over T is penalised steeply
        ax.axvspan(target_ms, max(target_ms * 1.05, float(done.latency_ms.max()) if len(done) else target_ms * 2), color="C3", alpha=0.12, label="over T (hard constraint)")
        ax.axvline(target_ms, color="C3", lw=2, label=f"T = {target_ms:g} ms (hard)")
    else:
        ax.axvline(target_ms, color="k", ls="--", label=f"T = {target_ms:g} ms (soft)")
    stage2 = df[(df.stage == 2) & (df.status == "succeeded")]
    if len(stage2):
        ax.scatter(stage2.latency_ms, stage2.accuracy, marker="*", s=120, color="C1", label="stage 2 (test)")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("top-1")
    ax.set_title("Accuracy vs latency")
    ax.legend(loc="lower right")
    return _save(fig, out)


def plot_latency_histogram(df, target_ms: float, out: Path) -> bytes:
    done = df[(df.stage == 1) & (df.status == "succeeded")]
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(done):
        ax.hist(done.latency_ms, bins=min(40, max(5, len(done) // 3)), color="C0", alpha=0.8)
    ax.axvline(target_ms, color="k", ls="--", label=f"T = {target_ms:g} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("trials")
    ax.set_title("Latency of sampled models around the target")
    ax.legend()
    return _save(fig, out)


def plot_memory_latency(df, out: Path) -> bytes:
    done = df[(df.stage == 1) & (df.status == "succeeded")]
    fig, ax = plt.subplots(figsize=(8, 4))
    sc = ax.scatter(done.latency_ms, done.memory_mb, c=done.accuracy, s=14, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="top-1")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("peak memory (MB)")
    ax.set_title("Memory vs latency")
    return _save(fig, out)


def plot_failures(df, out: Path) -> bytes:
    stage1 = df[(df.stage == 1) & df.status.isin(["succeeded", "failed"])].sort_values("ended").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    failed = stage1[stage1.status == "failed"]
    if len(failed):
        for i, (kind, group) in enumerate(failed.groupby("error_kind")):
            ax.scatter(group.index + 1, np.full(len(group), i), label=f"{kind} ({len(group)})", s=30)
        ax.set_yticks(range(failed.error_kind.nunique()), sorted(failed.error_kind.unique()))
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no failed trials", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel("finished trials")
    ax.set_title("Failures over time, by kind")
    return _save(fig, out)


def top_table(df: pd.DataFrame, k: int, resolution: int, num_classes: int) -> pd.DataFrame:
    from mnas.costs import arch_info

    done = df[(df.stage == 1) & (df.status == "succeeded") & (~df.cached)].sort_values("reward", ascending=False)
    done = done.drop_duplicates("arch_key").head(k)
    stage2 = df[(df.stage == 2) & (df.status == "succeeded")].set_index("arch_key")
    rows = []
    for _, t in done.iterrows():
        info = arch_info(Architecture.from_dict(t.architecture), resolution=resolution, num_classes=num_classes)
        s2 = stage2.loc[t.arch_key] if t.arch_key in stage2.index else None
        rows.append({
            "trial": int(t.id), "reward": t.reward, "top-1": t.accuracy, "latency ms": t.latency_ms, "memory MB": t.memory_mb,
            "params": info["params"], "MMACs": info["macs"] / 1e6,
            "stage-2 top-1": None if s2 is None else s2.accuracy, "stage-2 reward": None if s2 is None else s2.reward,
            "architecture": ", ".join(info["blocks"]),
        })
    return pd.DataFrame(rows)


def write_report(directory: str | Path, top: int = 10) -> Path:
    directory = Path(directory)
    out = directory / "report"
    out.mkdir(exist_ok=True)
    df = load_trials(directory)
    cfg = load_config_of(directory)
    hard = cfg.reward.mode == "hard" or cfg.reward.exponents()[0] == 0
    images = {
        "search_curve": plot_search_curve(df, out / "search_curve.png"),
        "accuracy_latency": plot_accuracy_latency(df, cfg.reward.target_ms, hard, out / "accuracy_latency.png"),
        "latency_histogram": plot_latency_histogram(df, cfg.reward.target_ms, out / "latency_histogram.png"),
        "memory_latency": plot_memory_latency(df, out / "memory_latency.png"),
        "failures": plot_failures(df, out / "failures.png"),
    }
    table = top_table(df, top, cfg.latency.resolution, cfg.latency.num_classes or 1000)
    table.to_csv(out / "top.csv", index=False)
    a = advice(df)
    body = [f"<h1>mnas report: {html.escape(cfg.name)}</h1>",
            f"<p>{html.escape(str(directory))} &middot; generated {datetime.datetime.now().isoformat(timespec='seconds')} &middot; "
            f"{a['finished']} finished ({a['succeeded']} succeeded, {a['failed']} failed), {a['running']} running, "
            f"{a['pending']} pending of {cfg.max_trials} &middot; T = {cfg.reward.target_ms:g} ms ({cfg.reward.mode})</p>",
            f"<p class=advice><b>Advice: {html.escape(a['verdict'])}</b> &mdash; {html.escape(a['why'])}</p>",
            "<h2>Top architectures</h2>", table.astype(object).where(table.notna(), "-").to_html(index=False, float_format=lambda v: f"{v:.4f}", classes="top")]
    for name, png in images.items():
        data = base64.b64encode(png).decode()
        body.append(f'<h2>{name.replace("_", " ").capitalize()}</h2><img id="{name}" alt="{name}" src="data:image/png;base64,{data}">')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>mnas report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:auto}img{max-width:100%}"
            "table.top{border-collapse:collapse;font-size:12px}table.top td,table.top th{border:1px solid #ccc;padding:3px}"
            ".advice{background:#eef;padding:6px}</style></head><body>" + "\n".join(body) + "</body></html>")
    (out / "index.html").write_text(page)
    return out / "index.html"
