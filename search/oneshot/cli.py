"""``mnas supernet ...``: train a supernet, evaluate an architecture through it, extract one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from mnas.cli import console, err_console, user_errors


def _progress(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)


@user_errors
def train_cmd(
    config: Path = typer.Argument(..., help="search config YAML (its proxy data, recipe, space and supernet section)"),
    out: Path = typer.Option(..., "--out", help="supernet directory (run again to resume after a kill)"),
    epochs: int | None = typer.Option(None, min=1, help="override supernet.epochs (more than before continues training)"),
):
    """Train one weight-sharing supernet over the config's space on its stage-1 training split."""
    from search.config import load_config
    from search.oneshot.training import train_supernet

    summary = train_supernet(load_config(config), out, log=_progress, epochs=epochs)
    console.print(f"supernet trained: {summary['epochs_done']} epochs, {summary['train_seconds']:.0f} s of training; {out}",
                  highlight=False, soft_wrap=True)


@user_errors
def eval_cmd(
    directory: Path = typer.Argument(..., help="a trained supernet directory"),
    archs: list[str] = typer.Argument(..., help="architectures: presets, JSON files or timm block strings"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Top-1 of architectures through the supernet (BN recomputed for each path)."""
    from mnas.presets import load_architecture
    from search.oneshot.evaluator import SupernetEvaluator
    from search.oneshot.training import trained_config

    evaluator = SupernetEvaluator(trained_config(directory), directory)
    rows = []
    for ref in archs:
        arch = load_architecture(ref)
        rows.append({"architecture": ref, **evaluator.evaluate(arch)})
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        console.print(f"{row['architecture']}: top-1 {row['top1']:.4f} on {row['images']} images ({row['seconds']:.2f} s)",
                      highlight=False, soft_wrap=True)


@user_errors
def extract_cmd(
    directory: Path = typer.Argument(..., help="a trained supernet directory"),
    arch: str = typer.Argument(..., help="the architecture: a preset, JSON file or timm block strings"),
    out: Path = typer.Option(..., "--out", help="where checkpoint.pt and metrics.json go (for mnas export --checkpoint)"),
):
    """Write ``arch`` as an ordinary checkpoint carrying the shared weights (BN statistics recomputed)."""
    from mnas.presets import load_architecture
    from mnas.train import save_checkpoint
    from search.oneshot.evaluator import SupernetEvaluator
    from search.oneshot.training import trained_config

    evaluator = SupernetEvaluator(trained_config(directory), directory)
    architecture = load_architecture(arch)
    result = evaluator.evaluate(architecture)
    model = evaluator.extract(architecture)
    metrics = {"top1": result["top1"], "eval_images": result["images"], "source": "supernet", "supernet": str(directory)}
    save_checkpoint(model, architecture, evaluator.num_classes, evaluator.cfg, metrics, out)
    console.print(f"extracted {architecture.summary()} (supernet top-1 {result['top1']:.4f}) to {out / 'checkpoint.pt'}",
                  highlight=False, soft_wrap=True)


def supernet_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="One-shot search: train a weight-sharing supernet, evaluate or extract architectures.")
    for name, command in (("train", train_cmd), ("eval", eval_cmd), ("extract", extract_cmd)):
        sub.command(name)(command)
    return sub
