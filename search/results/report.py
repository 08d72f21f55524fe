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
from search.experiment import queries  # noqa: E402
from search.experiment.directory import dataset_classes, open_store  # noqa: E402
from search.results.analysis import hypervolume_progress, load_experiment, pareto_front, search_curve  # noqa: E402

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


def plot_accuracy_latency(df, reward, out: Path) -> bytes:
    target_ms = reward.target_ms
    hard = reward.mode == "hard" or reward.exponents()[0] == 0
    done = queries.succeeded(df, 1)
    front = pareto_front(df)
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter(done.latency_ms, done.accuracy, s=12, alpha=0.5, label="trials")
    ax.plot(front.latency_ms, front.accuracy, "o-", color="C3", label="Pareto front")
    if reward.pareto:  # the front is wanted inside the thresholds
        ax.axvline(target_ms, color="C3", ls="--", label=f"latency threshold {target_ms:g} ms")
        if reward.accuracy_threshold:
            ax.axhline(reward.accuracy_threshold, color="C3", ls=":", label=f"top-1 threshold {reward.accuracy_threshold:g}")
    elif hard:  # hard constraint: everything over T is penalised steeply
        ax.axvspan(target_ms, max(target_ms * 1.05, float(done.latency_ms.max()) if len(done) else target_ms * 2), color="C3", alpha=0.12, label="over T (hard constraint)")
        ax.axvline(target_ms, color="C3", lw=2, label=f"T = {target_ms:g} ms (hard)")
    else:
        ax.axvline(target_ms, color="k", ls="--", label=f"T = {target_ms:g} ms (soft)")
    stage2 = queries.succeeded(df, 2)
    if len(stage2):
        ax.scatter(stage2.latency_ms, stage2.accuracy, marker="*", s=120, color="C1", label="stage 2 (test)")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("top-1")
    ax.set_title("Accuracy vs latency")
    ax.legend(loc="lower right")
    return _save(fig, out)


def plot_hypervolume(df, reward, out: Path) -> bytes:
    """Pareto mode: the hypervolume of the front found so far, over finished trials."""
    progress = hypervolume_progress(df, reward)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.step(progress.order, progress.hypervolume, where="post", color="C3")
    ax.set_xlabel("finished trials")
    unit = "top-1 x ms" + (" x MB" if reward.memory_target_mb is not None else "")
    ax.set_ylabel(f"hypervolume ({unit})")
    ax.set_title(f"Hypervolume over trials (reference: top-1 {reward.accuracy_threshold:g}, {reward.target_ms:g} ms"
                 + (f", {reward.memory_target_mb:g} MB)" if reward.memory_target_mb is not None else ")"))
    return _save(fig, out)


def plot_latency_histogram(df, target_ms: float, out: Path) -> bytes:
    done = queries.succeeded(df, 1, fresh=False)
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
    done = queries.succeeded(df, 1, fresh=False)
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


def plot_predicted_measured(df, out: Path) -> bytes | None:
    """Predicted against measured latency, for searches that used a predictor (None otherwise)."""
    both = df[(df.status == "succeeded") & ~df.cached.astype(bool) & df.latency_predicted_ms.notna() & df.latency_measured_ms.notna()]
    if both.empty:
        return None
    pred, meas = both.latency_predicted_ms.astype(float), both.latency_measured_ms.astype(float)
    within = float(((pred / meas - 1).abs() <= 0.10).mean())
    fig, ax = plt.subplots(figsize=(6, 5))
    lo, hi = float(min(pred.min(), meas.min())) * 0.9, float(max(pred.max(), meas.max())) * 1.1
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="C2", alpha=0.15, label="+-10%")
    ax.plot([lo, hi], [lo, hi], color="k", lw=1)
    ax.scatter(meas, pred, s=16, color=np.where(both.stage == 2, "C1", "C0"))
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms, before online rescaling)")
    ax.set_title(f"Predictor vs measurement: {len(both)} trials, {within:.0%} within 10%")
    ax.legend(loc="upper left")
    return _save(fig, out)


def plot_learning_curves(curves: dict[int, list[dict]], df, out: Path) -> bytes | None:
    """Validation top-1 per epoch of every stage-1 trial; early-stopped ones in red (None for 1-epoch proxies)."""
    if not any(len(c) > 1 for c in curves.values()):
        return None
    status = dict(zip(df.id, df.status))
    fig, ax = plt.subplots(figsize=(7, 4))
    for trial_id, points in curves.items():
        stopped = status.get(trial_id) == "early_stopped"
        ax.plot([p["epoch"] for p in points], [p["top1"] for p in points], color="C3" if stopped else "C0",
                alpha=0.7 if stopped else 0.35, lw=1, marker="x" if stopped else None, markevery=[-1])
    ax.plot([], [], color="C0", label="trained to the end")
    ax.plot([], [], color="C3", marker="x", label="stopped early")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1")
    n = sum(1 for s in status.values() if s == "early_stopped")
    ax.set_title(f"Learning curves: {len(curves)} trials, {n} stopped early")
    ax.legend(loc="lower right")
    return _save(fig, out)


def top_table(df: pd.DataFrame, k: int, resolution: int, num_classes: int, reward=None) -> pd.DataFrame:
    """The k best distinct architectures with their size; stage-2 results where present.

    Trials store their params and MACs (counted as measured); for trials of older
    experiments that lack them they are counted here, which needs torch.
    """
    stage2 = queries.succeeded(df, 2).set_index("arch_key")
    rows = []
    for _, t in queries.top_distinct(df, k, reward=reward).iterrows():
        arch = Architecture.from_dict(t.architecture)
        params, macs = t.params, t.macs
        if pd.isna(params) or pd.isna(macs):
            from mnas.costs import arch_info

            info = arch_info(arch, resolution=resolution, num_classes=num_classes)
            params, macs = info["params"], info["macs"]
        s2 = stage2.loc[t.arch_key] if t.arch_key in stage2.index else None
        rows.append({
            "trial": int(t.id), "reward": t.reward, "top-1": t.accuracy, "latency ms": t.latency_ms, "memory MB": t.memory_mb,
            "params": int(params), "MMACs": macs / 1e6,
            "stage-2 top-1": None if s2 is None else s2.accuracy, "stage-2 reward": None if s2 is None else s2.reward,
            "architecture": ", ".join(arch.to_timm()),
        })
    return pd.DataFrame(rows)


def _html_table(frame: pd.DataFrame, css_id: str) -> str:
    shown = frame.astype(object).where(frame.notna(), "-")
    return shown.to_html(index=False, float_format=lambda v: f"{v:.4f}", classes="facts", table_id=css_id)


def write_report(directory: str | Path, top: int = 10) -> Path:
    directory = Path(directory)
    out = directory / "report"
    out.mkdir(exist_ok=True)
    cfg, df, a = load_experiment(directory)
    images = {
        "search_curve": plot_search_curve(df, out / "search_curve.png"),
        "accuracy_latency": plot_accuracy_latency(df, cfg.reward, out / "accuracy_latency.png"),
        "latency_histogram": plot_latency_histogram(df, cfg.reward.target_ms, out / "latency_histogram.png"),
        "memory_latency": plot_memory_latency(df, out / "memory_latency.png"),
        "failures": plot_failures(df, out / "failures.png"),
    }
    if cfg.reward.pareto:
        images["hypervolume"] = plot_hypervolume(df, cfg.reward, out / "hypervolume.png")
    predicted = plot_predicted_measured(df, out / "predicted_vs_measured.png")
    if predicted is not None:
        images["predicted_vs_measured"] = predicted
    store = open_store(directory)
    try:
        curves = plot_learning_curves(store.curves(1), df, out / "learning_curves.png")
    finally:
        store.close()
    if curves is not None:
        images["learning_curves"] = curves
    table = top_table(df, top, cfg.latency.resolution, cfg.latency.num_classes or dataset_classes(directory) or 1000, cfg.reward)
    table.to_csv(out / "top.csv", index=False)
    from search.results.analysis import choice_effects, zero_cost_agreement

    choices = choice_effects(df, cfg.space.build())
    choices.to_csv(out / "choices.csv", index=False)
    zero_cost = zero_cost_agreement(df)
    body = [f"<h1>mnas report: {html.escape(cfg.name)}</h1>",
            f"<p>{html.escape(str(directory))} &middot; generated {datetime.datetime.now().isoformat(timespec='seconds')} &middot; "
            f"{a['finished']} finished ({a['succeeded']} succeeded, {a['failed']} failed, {a['early_stopped']} stopped early), {a['running']} running, "
            f"{a['pending']} pending of {cfg.max_trials} &middot; T = {cfg.reward.target_ms:g} ms ({cfg.reward.mode})"
            + (f" &middot; Pareto front: {a['front_size']} architectures, hypervolume {a['hypervolume']:.4g}" if "hypervolume" in a else "")
            + (" &middot; ran on " + html.escape(", ".join(f"{h}: {n}" for h, n in a["hosts"].items())) if a.get("hosts") else "")
            + "</p>",
            f"<p class=advice><b>Advice: {html.escape(a['verdict'])}</b> &mdash; {html.escape(a['why'])}</p>",
            "<h2>Top architectures</h2>", table.astype(object).where(table.notna(), "-").to_html(index=False, float_format=lambda v: f"{v:.4f}", classes="top")]
    if len(zero_cost):
        body += ["<h2>Zero-cost scores</h2><p>Kendall tau of each training-free score (at initialization) against the proxy "
                 "accuracy of the evaluated trials, and against stage 2 where it ran.</p>",
                 _html_table(zero_cost, "zero_cost")]
    for name, png in images.items():
        data = base64.b64encode(png).decode()
        body.append(f'<h2>{name.replace("_", " ").capitalize()}</h2><img id="{name}" alt="{name}" src="data:image/png;base64,{data}">')
    if len(choices):
        body += ["<h2>Choices</h2><p>Per searched token and choice: evaluated trials that took it, their mean reward and "
                 "accuracy; tokens whose choices differ most first (also in choices.csv).</p>", _html_table(choices, "choices")]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>mnas report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:auto}img{max-width:100%}"
            "table.top,table.facts{border-collapse:collapse;font-size:12px}table.top td,table.top th,table.facts td,table.facts th{border:1px solid #ccc;padding:3px}"
            ".advice{background:#eef;padding:6px}</style></head><body>" + "\n".join(body) + "</body></html>")
    (out / "index.html").write_text(page)
    return out / "index.html"
