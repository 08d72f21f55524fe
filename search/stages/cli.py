"""``mnas search``, ``mnas stage2`` and ``mnas tune``: run the stages of a search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from mnas.cli import console, user_errors
from mnas.errors import MnasError
from search.plugins import EXECUTORS


@user_errors
def search_cmd(
    config: Path | None = typer.Argument(None, help="search config YAML (optional with --resume)"),
    resume: Path | None = typer.Option(None, help="continue the search in this experiment directory"),
    executor: str | None = typer.Option(None, help="local or ray (overrides the config)"),
    out: Path | None = typer.Option(None, help="experiment directory (default runs/NAME-TIMESTAMP)"),
    progress: bool = typer.Option(True, help="live progress display"),
    tensorboard: bool = typer.Option(False, help="also write TensorBoard scalars per trial to DIR/tensorboard"),
):
    """Stage-1 search: propose, measure, train on the proxy, learn; resumable at any moment."""
    import time as _time

    from search.config import load_config
    from search.experiment.directory import open_search
    from search.stages.stage1 import run_search

    if executor not in (None, *EXECUTORS):
        raise MnasError(f"--executor must be one of {', '.join(EXECUTORS)} (got {executor!r})")
    if config is None and resume is None:
        raise MnasError("give a config file, or --resume DIR")
    cfg = load_config(config) if config is not None else None
    directory = resume or out or Path("runs") / f"{cfg.name}-{_time.strftime('%Y%m%d-%H%M%S')}"
    cfg = open_search(cfg, directory, resume is not None)
    console.print(f"experiment: {directory}  ({cfg.max_trials} trials, {cfg.max_parallel_trials} parallel, controller {cfg.controller.type})")
    outcome = run_search(cfg, directory, executor, progress=progress, tensorboard=tensorboard)
    c = outcome.counts
    early = f", {c['early_stopped']} stopped early" if c["early_stopped"] else ""
    early += f", {c['prefiltered']} prefiltered" if c["prefiltered"] else ""
    console.print(f"stopped: {outcome.reason}. {c['succeeded']} succeeded, {c['failed']} failed{early}, {outcome.seconds:.0f} s")
    if outcome.best:
        from mnas.arch import Architecture

        b = outcome.best
        console.print(f"best: trial {b['id']} reward {b['reward']:.4f} top-1 {b['accuracy']:.4f} latency {b['latency_ms']:.3f} ms")
        console.print("  " + Architecture.from_dict(b["architecture"]).summary())
    if outcome.stopped_early and not outcome.reason.startswith("no improvement"):
        raise typer.Exit(3)


@user_errors
def stage2_cmd(
    directory: Path = typer.Argument(..., help="experiment directory of a stage-1 search"),
    top: int = typer.Option(10, min=1, help="how many architectures to train"),
    epochs: int = typer.Option(..., min=1, help="full-training epochs"),
    executor: str | None = typer.Option(None, help="local or ray (overrides the config)"),
    init: str = typer.Option("scratch", help="scratch, or shared: start from the supernet's weights (evaluator: supernet)"),
    quantize: str | None = typer.Option(None, help="also test each winner quantized: int8 or dynamic (default: the config's latency.quantize)"),
    quantize_format: str | None = typer.Option(None, help="onnx or tflite (default: the latency source's format)"),
):
    """Stage 2: fully train the top-k architectures and test them; results go to the same store."""
    from rich.table import Table

    from mnas.arch import Architecture
    from search.experiment.directory import open_search
    from search.stages.stage2 import run_stage2

    if executor not in (None, *EXECUTORS):
        raise MnasError(f"--executor must be one of {', '.join(EXECUTORS)} (got {executor!r})")
    if quantize_format not in (None, "onnx", "tflite"):
        raise MnasError(f"--quantize-format must be onnx or tflite (got {quantize_format!r})")
    cfg = open_search(None, directory, resume=True)
    quantize = quantize or cfg.latency.quantize
    if quantize not in (None, "int8", "dynamic"):
        raise MnasError(f"--quantize must be int8 or dynamic (got {quantize!r})")
    rows = run_stage2(cfg, directory, top, epochs, executor, init, quantize, quantize_format)
    start = "" if init == "scratch" else " (from the supernet's weights)"
    table = Table(title=f"stage 2{start}: top {len(rows)} of {directory}")
    columns = ["rank", "stage-1 trial", "stage-1 top-1", "stage-2 top-1"] + ([f"{quantize} top-1", "agreement"] if quantize else [])
    for col in columns + ["latency ms", "reward", "architecture"]:
        table.add_column(col)
    for rank, row in enumerate(rows, 1):
        s1, s2, q = row["stage1"], row["stage2"], row.get("quantized")
        ok = s2["status"] == "succeeded"
        quantized = ([f"{q['top1']:.4f}", f"{q['agreement']:.1%}"] if q else ["-", "-"]) if quantize else []
        table.add_row(
            str(rank), str(s1["id"]), f"{s1['accuracy']:.4f}", f"{s2['accuracy']:.4f}" if ok else f"failed: {s2['error_kind']}",
            *quantized, f"{s1['latency_ms']:.3f}", f"{s2['reward']:.4f}" if ok else "-", Architecture.from_dict(s1["architecture"]).summary(),
        )
    console.print(table)
    for rank, row in enumerate(rows, 1):
        if q := row.get("quantized"):
            console.print(f"rank {rank}: test top-1 {q['float_top1']:.4f} float, {q['top1']:.4f} {quantize} {q['format']} "
                          f"({q['top1'] - q['float_top1']:+.4f}); same class on {q['agreement']:.1%} of {q['images']} test images",
                          highlight=False, soft_wrap=True)


@user_errors
def tune_cmd(
    config: Path = typer.Argument(..., help="search config YAML (its proxy: resolution, batch size, width)"),
    device: str = typer.Option("auto", help="cuda:N, cpu, or auto (the first GPU, else the CPU)"),
    seconds: float = typer.Option(6.0, min=0.5, help="timed window per measurement"),
    max_per_gpu: int = typer.Option(8, min=1, max=16, help="largest packing tried"),
    out: Path | None = typer.Option(None, help="also write the result as JSON (a search keeps it as DIR/tuning.json)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Measure precision, layout and trials per GPU for this config's proxy on this machine."""
    from rich.table import Table

    from search.config import load_config
    from search.trials.executors import gpu_count
    from search.trials.tuning import tune

    cfg = load_config(config)
    if device == "auto":
        device = "cuda:0" if gpu_count() else "cpu"
    result = tune(cfg.proxy.model_dump(), device, seconds=seconds, max_per_gpu=max_per_gpu)
    if out:
        out.write_text(json.dumps(result, indent=1))
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title=f"{result['device_name']} ({device}), {cfg.proxy.resolution} px, batch {cfg.proxy.batch_size}: reference MnasNet-A1")
    for col in ("precision", "channels_last", "trials", "images/s in all", "per trial", "peak MB"):
        table.add_column(col, justify="right")
    for r in result["single"]:
        table.add_row(r["precision"], str(r["channels_last"]), "1", f"{r['images_per_s']:.0f}", f"{r['images_per_s']:.0f}", f"{r['peak_mb']:.0f}")
    for r in result["packing"][1:]:
        if "skipped" in r:
            table.add_row(result["precision"], str(result["channels_last"]), str(r["trials"]), r["skipped"], "", "")
        else:
            table.add_row(result["precision"], str(result["channels_last"]), str(r["trials"]), f"{r['images_per_s']:.0f}", f"{r['per_trial']:.0f}", f"{r['peak_mb']:.0f}")
    console.print(table)
    console.print(f"choice: precision {result['precision']}, channels_last {result['channels_last']}, trials_per_gpu {result['trials_per_gpu']} "
                  f"(measured in {result['seconds']:.0f} s)")
