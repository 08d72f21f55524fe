"""``mnas proxy ...``: the proxy-task design tools, each a small command over one study directory.

The order of the workflow: ``check`` (cheap), ``baseline`` (and ``--tune`` the recipe),
``select`` the models, train their ``reference``, ``search`` the proxy settings, measure
the chosen one's ``variance``. Every command is resumable: run it again and only what is
missing trains. The study lives in ``--out`` (default runs/proxy-NAME).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer

from mnas.cli import console, err_console, user_errors
from mnas.errors import MnasError
from search.plugins import EXECUTORS

OUT_HELP = "study directory (default runs/proxy-NAME; every proxy command of one config shares it)"
EXECUTOR_HELP = "local or ray (overrides the config)"


def _open(config: Path, out: Path | None):
    from search.config import load_config
    from search.proxy.study import Study

    cfg = load_config(config)
    return Study(cfg, out or Path("runs") / f"proxy-{cfg.name}")


def _log(line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True)


def _progress(line: str) -> None:
    """A training finished, a latency measured: on stderr, so that stdout holds only the answer (--json)."""
    err_console.print(line, highlight=False, soft_wrap=True)


def _executor(kind: str | None) -> str | None:
    if kind not in (None, *EXECUTORS):
        raise MnasError(f"--executor must be one of {', '.join(EXECUTORS)} (got {kind!r})")
    return kind


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _emit(data, as_json: bool) -> bool:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=float) + "\n")
    return as_json


@user_errors
def check_cmd(
    config: Path = typer.Argument(..., help="search config YAML"),
    probe: bool = typer.Option(True, help="train the space's largest architecture a few steps (memory and trial time)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Final checks: the data is not too small or imbalanced, the latency source answers, the largest model fits."""
    from dataclasses import asdict

    from search.config import load_config
    from search.experiment.preflight import run_checks

    report = run_checks(load_config(config), probe=probe)
    if not _emit(asdict(report), as_json):
        for k, v in report.facts.items():
            _log(f"{k}: {v}")
        for w in report.warnings:
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    if report.problems:
        raise MnasError("; ".join(report.problems))
    if not as_json:
        _log("checks passed" + (f" ({len(report.warnings)} warning(s))" if report.warnings else ""))


@user_errors
def baseline_cmd(
    config: Path = typer.Argument(..., help="search config YAML"),
    arch: str | None = typer.Option(None, help="the baseline (preset, JSON file, timm strings); default the space's base network"),
    epochs: int | None = typer.Option(None, min=1, help="full-training epochs (default 4 x the proxy's)"),
    tune: bool = typer.Option(False, help="first tune the recipe: batch size by throughput, then lr / weight decay / label smoothing"),
    tune_trials: int = typer.Option(8, min=2, help="quasi-random recipes tried by --tune"),
    batch_sizes: str | None = typer.Option(None, help="with --tune: batch sizes to try, e.g. 64,128,256 (default 32-512, 1024 on a GPU)"),
    update_config: bool = typer.Option(False, help="with --tune: write the tuned recipe into CONFIG itself (YAML comments are not kept)"),
    out: Path | None = typer.Option(None, help=OUT_HELP),
    executor: str | None = typer.Option(None, help=EXECUTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Train the baseline with the full recipe on the stage-1 split: its validation curve, time and images/s."""
    from search.proxy.baseline import baseline_architecture, run_baseline, tune_recipe
    from search.proxy.plots import plot_curves

    with _open(config, out) as study:
        model = baseline_architecture(study, arch)
        answer = {}
        if tune:
            try:
                sizes = [int(b) for b in batch_sizes.split(",")] if batch_sizes else None
            except ValueError:
                raise MnasError(f"--batch-sizes takes integers like 64,128,256 (got {batch_sizes!r})") from None
            tuned = tune_recipe(study, model, tune_trials, _progress, _executor(executor), sizes)
            answer["tuned"] = tuned
            written = _write_tuned(config, study, tuned["recipe"], update_config)
            if not as_json:
                _print_tuning(tuned, written)
            study.config = study.config.model_copy(update={"proxy": study.config.proxy.model_copy(update=tuned["recipe"])})
            study.refresh_context()
        base = run_baseline(study, model, epochs, _progress, _executor(executor))
        answer["baseline"] = base
        plot = plot_curves({base["summary"][:60]: base["curve"]}, f"baseline, {base['epochs']} epochs", study.dir / "proxy" / "baseline.png",
                           base["plateau_epoch"])
        if _emit(answer, as_json):
            return
        from rich.table import Table

        table = Table(title=f"baseline: {base['summary']}")
        for col in ("epoch", "top-1", "val loss", "train loss", "seconds"):
            table.add_column(col)
        for p in base["curve"]:
            table.add_row(str(p["epoch"]), _fmt(p["top1"]), _fmt(p.get("loss")), _fmt(p.get("train_loss")), _fmt(p.get("seconds"), 1))
        console.print(table)
        _log(f"final top-1 {base['top1']:.4f}; within 1 point of its best from epoch {base['plateau_epoch']} of {base['epochs']}; "
             f"{base['train_seconds']:.0f} s training, {base['images_per_s']:.0f} images/s on {base['device']}; plot {plot}")


def _write_tuned(config: Path, study, recipe: dict, in_place: bool) -> Path:
    import yaml

    from mnas.yamlfiles import read_yaml_mapping
    from search.config import ConfigError

    data = read_yaml_mapping(config, ConfigError, "search config")
    data.setdefault("proxy", {}).update(recipe)
    target = config if in_place else study.dir / "proxy" / "tuned-config.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def _print_tuning(tuned: dict, written: Path) -> None:
    from rich.table import Table

    b = tuned["batch"]
    _log("batch size by throughput: " + ", ".join(
        f"{r['batch_size']}: {r['images_per_s']:.0f} img/s" if r["fits"] else f"{r['batch_size']}: does not fit" for r in b["rows"])
        + f" -> {b['batch_size']}")
    table = Table(title="recipe trials (quasi-random)")
    for col in ("trial", "lr", "weight decay", "label smoothing", "top-1"):
        table.add_column(col)
    for r in tuned["trials"]:
        table.add_row(r["name"], _fmt(r.get("lr")), _fmt(r.get("weight_decay"), 6), _fmt(r.get("label_smoothing"), 3), _fmt(r["top1"]))
    console.print(table)
    _log(f"best: {tuned['best']['name']} top-1 {tuned['best']['top1']:.4f} (std over trials {tuned['std']:.4f}, best-to-third "
         f"{tuned['top3_range']:.4f}); recipe {tuned['recipe']} written to {written}")


@user_errors
def select_cmd(
    config: Path = typer.Argument(..., help="search config YAML"),
    candidates: int = typer.Option(30, min=3, help="architectures sampled from the space"),
    models: int = typer.Option(10, min=3, help="models kept, spread over latency and accuracy"),
    out: Path | None = typer.Option(None, help=OUT_HELP),
    executor: str | None = typer.Option(None, help=EXECUTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Sample candidates, measure (or predict) their latency, train each once, keep models spread out."""
    from mnas.arch import Architecture
    from search.proxy.select import select_models

    with _open(config, out) as study:
        selected = select_models(study, candidates, models, _progress, _executor(executor))
        if _emit(selected, as_json):
            return
        from rich.table import Table

        table = Table(title=f"{len(selected)} models selected from {candidates} candidates")
        for col in ("model", "latency ms", "proxy top-1", "architecture"):
            table.add_column(col)
        for m in selected:
            table.add_row(m["name"], _fmt(m["latency_ms"], 3), _fmt(m["proxy_accuracy"]), Architecture.from_dict(m["architecture"]).summary())
        console.print(table)


@user_errors
def reference_cmd(
    config: Path = typer.Argument(..., help="search config YAML"),
    epochs: int | None = typer.Option(None, min=1, help="full-recipe epochs (default: the study's earlier choice, else 4 x the proxy's)"),
    data_fraction: float | None = typer.Option(None, min=0.01, max=1.0, help="share of the stage-1 training split (default all of it; "
                                                  "less only where full training is out of reach, e.g. on a CPU)"),
    repeats: int | None = typer.Option(None, min=1, help="train each model this many times with other seeds and report how well "
                                          "the repeats agree (Kendall tau): a reference must rank before it can judge a proxy (default 1)"),
    out: Path | None = typer.Option(None, help=OUT_HELP),
    executor: str | None = typer.Option(None, help=EXECUTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Train the selected models with the full recipe on the stage-1 split: the reference ranking."""
    from search.proxy.plots import plot_curves
    from search.proxy.settings import REFERENCE, run_reference

    with _open(config, out) as study:
        ref = run_reference(study, epochs, _progress, _executor(executor), data_fraction, repeats)
        setting = {"epochs": ref["epochs"], "data_fraction": ref["data_fraction"]}
        curves = {row["meta"]["name"]: study.store.curves(stage=3).get(row["id"], []) for row in study.store.trials(stage=3)
                  if row["meta"].get("step") == REFERENCE and row["meta"].get("setting") == setting and row["meta"].get("seed") is None}
        plot = plot_curves(curves, f"reference: {ref['epochs']} epochs", study.dir / "proxy" / "reference.png")
        if _emit(ref, as_json):
            return
        _log(f"reference ({ref['epochs']} epochs on {ref['data_fraction']:.0%} of the split, {_fmt(ref['seconds_per_model'], 1)} s per model): "
             + ", ".join(f"{n} {a:.4f}" for n, a in sorted(ref["accuracy"].items())))
        _log("tau of the reference curve at each epoch vs its final ranking: "
             + ", ".join(f"epoch {s['epoch']} {_fmt(s['tau_vs_final'], 2)}" for s in ref["settle"]) + f"; plot {plot}")
        if agree := ref.get("self_agreement"):
            _log(f"the {ref['repeats']} repeats agree at Kendall tau {_fmt(agree['tau'], 3)} (seed-to-seed top-1 std "
                 f"{_fmt(agree['accuracy_std'])}); aim for >= 0.7 before judging proxies against this reference")


@user_errors
def search_cmd(
    config: Path = typer.Argument(..., help="search config YAML"),
    grid: list[str] = typer.Option(..., help="FIELD=V1,V2,... (repeat): epochs, resolution, width_mult, data_fraction, batch_size, ..."),
    min_tau: float = typer.Option(0.65, help="a setting passes with Kendall tau >= this against the reference"),
    out: Path | None = typer.Option(None, help=OUT_HELP),
    executor: str | None = typer.Option(None, help=EXECUTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Train the selected models under every proxy setting of the grid; the cheapest with tau >= --min-tau wins."""
    import yaml

    from search.proxy.plots import plot_tau_vs_cost
    from search.proxy.settings import parse_grid, search_settings, winner_block

    if not -1 <= min_tau <= 1:
        raise MnasError(f"--min-tau is a Kendall tau, in [-1, 1] (got {min_tau})")
    with _open(config, out) as study:
        outcome = search_settings(study, parse_grid(grid), min_tau, _progress, _executor(executor))
        plot = plot_tau_vs_cost(outcome["rows"], min_tau, study.dir / "proxy" / "tau_vs_cost.png")
        block_path = None
        if outcome["winner"]:
            block_path = study.dir / "proxy" / "winner.yaml"
            block_path.write_text(yaml.safe_dump(winner_block(study, outcome["winner"]["setting"]), sort_keys=False))
        if _emit({**outcome, "winner_file": str(block_path) if block_path else None}, as_json):
            return
        from rich.table import Table

        table = Table(title=f"proxy settings against the reference (min tau {min_tau:g})")
        for col in ("setting", "status", "models", "tau", "p", "spearman", "s / trial", "GPU-s / trial", "mean top-1", "passes"):
            table.add_column(col)
        for r in sorted(outcome["rows"], key=lambda r: (not r["passes"], r["seconds_per_trial"] if not math.isnan(r["seconds_per_trial"]) else 1e18)):
            table.add_row(r["label"], r["status"], str(r["trained"]), _fmt(r["tau"], 3), _fmt(r["tau_p"], 3), _fmt(r["spearman"], 3),
                          _fmt(r["seconds_per_trial"], 1), _fmt(r["gpu_seconds_per_trial"], 1), _fmt(r["mean_accuracy"]),
                          "yes" if r["passes"] else "no")
        console.print(table)
        if outcome["zero_cost"]:
            _log("zero-cost scores (Kendall tau): " + "; ".join(
                f"{z['score']} vs reference {_fmt(z['tau_reference'], 3)}, vs winner {_fmt(z['tau_proxy'], 3)}" for z in outcome["zero_cost"]))
        if outcome["winner"]:
            _log(f"winner: {outcome['winner']['label']} (tau {outcome['winner']['tau']:.3f}, {outcome['winner']['seconds_per_trial']:.1f} s "
                 f"per trial); its proxy: block is in {block_path}; plot {plot}")
        else:
            _log(f"no setting reached tau {min_tau:g}; try longer or larger settings. Plot {plot}")


@user_errors
def variance_cmd(
    config: Path = typer.Argument(..., help="search config YAML"),
    repeats: int = typer.Option(5, min=2, help="trainings of the same architecture, each with its own seed"),
    arch: str | None = typer.Option(None, help="architecture (default the space's base network)"),
    setting: list[str] = typer.Option([], help="FIELD=VALUE (repeat): the proxy setting (default the search winner's, else the config's)"),
    out: Path | None = typer.Option(None, help=OUT_HELP),
    executor: str | None = typer.Option(None, help=EXECUTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """The proxy's noise: one architecture trained --repeats times with different seeds."""
    from search.proxy.baseline import baseline_architecture
    from search.proxy.plots import plot_curves
    from search.proxy.settings import parse_grid
    from search.proxy.variance import run_variance

    with _open(config, out) as study:
        if setting:
            combos = parse_grid(setting)
            if len(combos) != 1:
                raise MnasError("--setting takes one value per field (FIELD=VALUE)")
            chosen = combos[0]
        else:
            chosen = ((study.get("search") or {}).get("winner") or {}).get("setting", {})
        result = run_variance(study, baseline_architecture(study, arch), chosen, repeats, _progress, _executor(executor))
        curves = {f"seed {row['meta']['seed']}": study.store.curves(stage=3).get(row["id"], []) for row in study.store.trials(stage=3, status="succeeded")
                  if row["meta"].get("step") == "variance" and row["meta"].get("setting") == chosen}
        plot = plot_curves(curves, f"variance: {result['repeats']} seeds", study.dir / "proxy" / "variance.png")
        if _emit(result, as_json):
            return
        from search.proxy.study import setting_label

        _log(f"{setting_label(chosen)}: top-1 {result['mean']:.4f} +- {result['std']:.4f} (range {result['range']:.4f}) over "
             f"{result['repeats']} seeds; curve roughness {_fmt(result['roughness'])}; plot {plot}")
        _log(f"rule: {result['rule']}")
        if result["noisy"]:
            err_console.print("[yellow]warning:[/] the proxy's noise is as large as the differences between architectures; "
                              "a longer or larger proxy (or repeats per trial) is needed", highlight=False, soft_wrap=True)


def proxy_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="Proxy-task design: baseline, model selection, reference, proxy search, variance, checks.")
    for name, command in (("check", check_cmd), ("baseline", baseline_cmd), ("select", select_cmd), ("reference", reference_cmd),
                          ("search", search_cmd), ("variance", variance_cmd)):
        sub.command(name)(command)
    return sub
