"""``mnas report``, ``status``, ``estimate``, ``export`` and ``dashboard``: what a search produced."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from mnas.cli import console, user_errors
from mnas.errors import MnasError


@user_errors
def report_cmd(
    directory: Path = typer.Argument(..., help="experiment directory"),
    top: int = typer.Option(10, min=1, help="rows in the top-k table"),
):
    """Plots (search curve, Pareto front, latency histogram, memory, failures), top-k table and an HTML page in DIR/report/."""
    from search.results.report import write_report

    page = write_report(directory, top)
    console.print(f"wrote {page} (and the PNGs and top.csv beside it)")


@user_errors
def status_cmd(
    directory: Path = typer.Argument(..., help="experiment directory"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Progress and advice (converging, too many failures, not rising after 500 trials, or keep going)."""
    from rich.table import Table

    from search.results.analysis import load_experiment

    cfg, _, a = load_experiment(directory)
    a["max_trials"] = cfg.max_trials
    if as_json:
        sys.stdout.write(json.dumps(a, indent=2) + "\n")
        return
    table = Table(show_header=False, title=f"{cfg.name}: {directory}")
    table.add_row("trials", f"{a['finished']}/{cfg.max_trials} finished: {a['succeeded']} succeeded, {a['failed']} failed ({a['failure_rate']:.0%}), {a['early_stopped']} stopped early, {a.get('prefiltered', 0)} prefiltered; {a['running']} running, {a['pending']} pending")
    table.add_row("best reward", "-" if a["best_reward"] is None else f"{a['best_reward']:.4f}")
    if a.get("hosts"):
        table.add_row("ran on", ", ".join(f"{host}: {n}" for host, n in a["hosts"].items()))
    if "hypervolume" in a:
        table.add_row("Pareto front", f"{a['front_size']} architectures; hypervolume {a['hypervolume']:.4g} "
                      f"(at half the trials: {a['hypervolume_at_half']:.4g}; reference: top-1 {cfg.reward.accuracy_threshold:g}, "
                      f"{cfg.reward.target_ms:g} ms)")
    if "variance_recent" in a:
        table.add_row("reward variance", f"{a['variance_previous']:.2e} -> {a['variance_recent']:.2e}")
    table.add_row("advice", f"[bold]{a['verdict']}[/]: {a['why']}")
    console.print(table)


@user_errors
def estimate_cmd(
    config: Path = typer.Argument(..., help="search config YAML"),
    from_dir: Path | None = typer.Option(None, "--from", help="take the average trial time from this experiment"),
    probe: int = typer.Option(2, min=1, help="without --from: time this many real trials now"),
    price: float = typer.Option(2.5, help="price per GPU-hour"),
    gpus_per_trial: float | None = typer.Option(None, help="default 1 / trials_per_gpu"),
    stage2_top: int = typer.Option(10, min=0),
    stage2_epochs: int | None = typer.Option(None, min=1, help="default 20 x the proxy epochs"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Search cost: trials x average trial time / parallel trials, GPU-hours and money, plus stage 2."""
    from search.config import load_config
    from search.results.estimate import estimate, trial_seconds_from, trial_seconds_probe
    from search.trials.tuning import Tuning, slots_per_gpu

    cfg = load_config(config)
    seconds = trial_seconds_from(from_dir) if from_dir else trial_seconds_probe(cfg, probe)
    tuned = Path(from_dir, "tuning.json") if from_dir else None  # what the experiment measured, else one per GPU
    packing = slots_per_gpu(cfg.executor, Tuning.model_validate_json(tuned.read_text()) if tuned and tuned.is_file() else None)
    e = estimate(cfg, seconds, gpus_per_trial or 1 / packing, price, stage2_top, stage2_epochs)
    if as_json:
        sys.stdout.write(json.dumps(e, indent=2) + "\n")
        return
    console.print(
        f"{e['trials']} trials x {e['average_trial_s']:.1f} s (mean of {e['timed_trials']}) / {e['parallel']} parallel = "
        f"{e['search_wall_hours']:.2f} h ({e['search_days']:.2f} days); {e['search_gpu_hours']:.1f} GPU-hours = "
        f"{e['search_cost']:,.2f} at {price:g}/GPU-hour\n"
        f"stage 2: top {e['stage2_top']} x {e['stage2_epochs']} epochs = {e['stage2_gpu_hours']:.1f} GPU-hours = {e['stage2_cost']:,.2f}"
    )


# ----- export: one architecture, or the winners of an experiment ---------------------------
@user_errors
def export_cmd(
    arch: str = typer.Argument(..., help="preset, architecture JSON file, timm block strings, or an experiment directory"),
    fmt: str = typer.Option("onnx", "--format", help="onnx or tflite; for an experiment a comma list, e.g. onnx,tflite"),
    out: Path = typer.Option(..., "--out", help="output file (an architecture) or folder (an experiment's winners)"),
    resolution: int | None = typer.Option(None, help="input resolution (default 224; an experiment's latency resolution)"),
    num_classes: int | None = typer.Option(None, help="classifier outputs (default 1000; an experiment's dataset)"),
    width_mult: float = typer.Option(1.0, help="width multiplier"),
    top: int = typer.Option(3, min=1, help="experiment: how many winners by reward"),
    checkpoint: Path | None = typer.Option(None, help="one architecture: checkpoint.pt from `mnas train`; "
                                              "an experiment: use 'stage2' to take the stage-2 weights (always so with --quantize)"),
    quantize: str | None = typer.Option(None, help="int8 (static: per-channel int8 weights, int8 activations) or dynamic (int8 weights)"),
    calibration: str | None = typer.Option(None, help="int8: data spec whose training images calibrate the scales (digits, npz:DIR, ...)"),
    calibration_samples: int = typer.Option(256, min=1, help="int8: calibration images"),
):
    """Export an architecture to ONNX or TFLite (float, or quantized with --quantize), or an experiment's top-k winners."""
    from mnas.export import export_model

    if quantize not in (None, "int8", "dynamic"):
        raise MnasError(f"--quantize must be int8 or dynamic (got {quantize!r})")
    if quantize == "int8" and not calibration and not Path(arch).is_dir():
        raise MnasError("--quantize int8 needs --calibration DATA_SPEC (training images that set the int8 scales)")

    if Path(arch).is_dir():
        from search.results.winners import export_winners

        formats = [f.strip() for f in fmt.split(",") if f.strip()]
        if calibration:
            raise MnasError("--calibration: an experiment's winners are calibrated on its own stage-2 training data")
        if quantize and resolution:
            raise MnasError("--resolution: quantized winners are exported at the resolution they were trained at")
        written = export_winners(Path(arch), out, top, formats, resolution, use_stage2=checkpoint is not None and str(checkpoint) == "stage2",
                                 quantize=quantize)
        for path in written:
            console.print(f"wrote {path}")
        return
    from mnas.presets import load_architecture

    if "," in fmt:
        raise MnasError("give one --format for a single architecture")
    if checkpoint is not None:
        from mnas.train import load_checkpoint

        if not checkpoint.is_file():
            raise MnasError(f"checkpoint not found: {checkpoint}")
        model = load_checkpoint(checkpoint)
    else:
        from mnas.model import build_model

        model = build_model(load_architecture(arch), num_classes or 1000, width_mult)
    if not quantize:
        path = export_model(model, out, fmt, resolution or 224)
        console.print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        return
    from mnas.quantize import calibration_inputs, int8_tensors, quantize_model, random_inputs, top1_agreement

    res = resolution or 224
    inputs = calibration_inputs(calibration, res, calibration_samples) if calibration else random_inputs(res)
    path = quantize_model(model, out, fmt, res, quantize, inputs)
    agree = top1_agreement(model, path, inputs)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {quantize}, {int8_tensors(path)} int8 tensors); "
                  f"top-1 agrees with the float model on {agree:.1%} of {len(inputs)} {'calibration' if calibration else 'random'} inputs")


@user_errors
def dashboard_cmd(
    directory: Path = typer.Argument(..., help="experiment directory (a running or finished search)"),
    host: str = typer.Option("127.0.0.1", help="bind address; loopback by default"),
    port: int = typer.Option(8700),
    refresh: float = typer.Option(10.0, min=1.0, help="seconds between rebuilds of the report"),
):
    """Serve the report on loopback and rebuild it while the search runs (reads the store only)."""
    import uvicorn

    from search.experiment.directory import open_store
    from search.results.dashboard import create_dashboard

    open_store(directory).close()  # a clear error for a directory that holds no experiment
    console.print(f"dashboard for {directory} on http://{host}:{port} (rebuilt every {refresh:g} s)")
    uvicorn.run(create_dashboard(directory, refresh), host=host, port=port, log_level="warning")


@user_errors
def controllers_table_cmd(
    directory: Path = typer.Argument(..., help="an experiment directory (a search, or a proxy study)"),
    out: Path = typer.Option(..., "--out", help="the trial table JSON to write"),
):
    """Export an experiment's finished stage-1 trials as a trial table for mnas controllers compare."""
    from search.results.table import experiment_table

    table = experiment_table(directory)
    table.save(out)
    console.print(f"{len(table.rows)} trials of {directory} -> {out}")
