"""The full ``mnas`` command: the model-side commands of mnas.cli plus latency and search.

``build_app()`` assembles it explicitly; ``app`` (the console script) and
``python -m search.cli`` are the same app. It lives on the search side because it reaches
the latency service's client, which the model side (``mnas``) must not import. Module
imports stay light (no torch, no pandas): each command imports what it needs, so that
``mnas status`` starts fast.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import typer

from mnas.cli import add_model_commands, console, user_errors
from mnas.errors import MnasError

MODEL_SUFFIXES = {".onnx", ".tflite"}


@user_errors
def latency_measure_cmd(
    target: str = typer.Argument(..., help="a .onnx/.tflite file, or an architecture (preset, JSON file, timm strings)"),
    url: str | None = typer.Option(None, help="latency service URL, e.g. http://127.0.0.1:8600"),
    device: str | None = typer.Option(None, help="device profile YAML: measure here, in-process"),
    on: str | None = typer.Option(None, "--on", help="with --url: the device or pool at the service (default: its only one)"),
    token: str | None = typer.Option(None, envvar="MNAS_LATENCY_TOKEN", help="bearer token for the service"),
    resolution: int = typer.Option(224, help="input resolution when exporting an architecture"),
    num_classes: int = typer.Option(1000, help="classifier outputs when exporting an architecture"),
    input_shape: str | None = typer.Option(None, help="override the model's input shape, e.g. 1,3,160,160"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Latency (median, p10, p90, CV) and peak memory of a model file or an architecture."""
    from latency_service.client import LatencyServiceError, make_measurer

    shape = None
    if input_shape:
        try:
            shape = [int(v) for v in input_shape.split(",")]
        except ValueError:
            raise MnasError(f"--input-shape must look like 1,3,224,224 (got {input_shape!r})") from None
    try:
        measurer = make_measurer(url=url, device=device, token=token, target=on)
        try:
            path = Path(target)
            if path.suffix in MODEL_SUFFIXES:
                if not path.is_file():
                    raise MnasError(f"model file not found: {path}")
                result = measurer.measure(path, shape)
            else:
                result = _measure_architecture(measurer, target, resolution, num_classes, shape)
        finally:
            measurer.close()
    except LatencyServiceError as exc:
        raise MnasError(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    p10 = "n/a" if result.get("p10_ms") is None else f"{result['p10_ms']:.3f}"
    p90 = "n/a" if result.get("p90_ms") is None else f"{result['p90_ms']:.3f}"
    console.print(
        f"{result['device']['name']}: {result['latency_ms']:.3f} ms median (p10 {p10}, p90 {p90}, CV {result['cv']:.1%}), "
        f"peak memory {result['peak_memory_mb']:.1f} MB, model {result['model_size_mb']:.2f} MB"
        + (" [cached]" if result.get("cached") else "")
    )


def _measure_architecture(measurer, target: str, resolution: int, num_classes: int, shape):
    from mnas.export import export_architecture
    from mnas.presets import load_architecture

    arch = load_architecture(target)
    fmt = measurer.model_format()
    with tempfile.TemporaryDirectory(prefix="mnas-export-") as tmp:
        path = export_architecture(arch, Path(tmp) / f"model.{fmt}", fmt, resolution, num_classes)
        return measurer.measure(path, shape)


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

    if executor not in (None, "local", "ray"):
        raise MnasError(f"--executor must be local or ray (got {executor!r})")
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

    if executor not in (None, "local", "ray"):
        raise MnasError(f"--executor must be local or ray (got {executor!r})")
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


def _device_profile(device: str):
    """A device profile by name or path, or one clear error."""
    from devices.errors import ProfileError
    from devices.profile import load_profile

    try:
        return load_profile(device)
    except ProfileError as exc:
        raise MnasError(str(exc)) from None


@user_errors
def latency_predict_cmd(
    arch: str = typer.Argument(..., help="preset, architecture JSON file, or timm block strings"),
    predictor: Path = typer.Option(..., help="predictor file from mnas predictor build"),
    resolution: int | None = typer.Option(None, help="one of the predictor's resolutions (default its first)"),
    device: str | None = typer.Option(None, help="device profile the figures are for: refused if the predictor was built for another"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Predicted latency, peak memory and per-block breakdown from a predictor file (no measurement)."""
    from rich.table import Table

    from mnas.presets import load_architecture
    from search.latency.predictor import Predictor

    p = Predictor.load(predictor)
    if device:
        profile = _device_profile(device)
        p.check_device(profile.name, profile.settings_hash())
    architecture = load_architecture(arch)
    result = p.predict(architecture, resolution)
    if as_json:
        sys.stdout.write(json.dumps({**result.to_dict(), "device": p.device, "resolution": resolution or p.resolutions[0]}, indent=2) + "\n")
        return
    table = Table(title=f"{arch} on {p.device['name']} (predicted)")
    table.add_column("part")
    table.add_column("ms (layer sum)", justify="right")
    names = ["stem"] + [f"block {i + 1}" for i in range(len(architecture.blocks))] + ["head"]
    for name, ms in zip(names, result.blocks):
        table.add_row(name, f"{ms:.4f}")
    console.print(table)
    note = f" ({result.off_table} layers off the table, estimated)" if result.off_table else ""
    console.print(f"latency {result.latency_ms:.3f} ms, peak memory {result.peak_memory_mb:.1f} MB{note}")


@user_errors
def latency_profile_cmd(
    arch: str = typer.Argument(..., help="preset, architecture JSON file, or timm block strings"),
    device: str | None = typer.Option(None, help="device profile (onnxruntime backend) to profile on, here"),
    url: str | None = typer.Option(None, help="a latency service (not yet: profiling runs in-process)"),
    resolution: int = typer.Option(224, help="input resolution"),
    num_classes: int = typer.Option(1000, min=1),
    runs: int = typer.Option(30, min=1, help="profiled runs (after 10 warm-up runs)"),
    predictor: Path | None = typer.Option(None, help="also show this predictor's per-block figures"),
    top: int = typer.Option(10, min=0, help="slowest operators to list"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Where the time goes: measured time per part and the slowest operators (onnxruntime's profiler)."""
    from rich.table import Table

    from devices.errors import MeasurementError
    from mnas.presets import load_architecture
    from search.latency.predictor import Predictor
    from search.latency.profiling import profile_architecture

    if url or not device:
        raise MnasError("give --device PROFILE: per-operator profiling runs in-process with the profile's settings "
                        "(a latency service does not offer it yet)")
    profile = _device_profile(device)
    p = Predictor.load(predictor) if predictor else None
    if p is not None:
        p.check_device(profile.name, profile.settings_hash())
    try:
        result = profile_architecture(load_architecture(arch), profile, resolution, num_classes, runs, p)
    except MeasurementError as exc:
        raise MnasError(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title=f"{arch} on {profile.name}, {resolution} px: {result['run_ms']:.3f} ms per run (median of {result['runs']})")
    for col in ("part", "ms", "share") + (("predicted ms (layer sum)",) if p else ()):
        table.add_column(col, justify="left" if col == "part" else "right")
    for row in result["parts"]:
        cells = [row["part"], f"{row['ms']:.4f}", f"{row['share']:.1%}"]
        if p:
            cells.append("" if row.get("predicted_ms") is None else f"{row['predicted_ms']:.4f}")
        table.add_row(*cells)
    console.print(table)
    if p:
        console.print(f"predicted latency {result['predicted_latency_ms']:.3f} ms (whole-model correction applied)")
    if top:
        slow = Table(title=f"slowest {top} operators")
        for col in ("node", "op", "part", "ms"):
            slow.add_column(col)
        for node in result["nodes"][:top]:
            slow.add_row(node["node"], node["op"], node["part"], f"{node['ms']:.4f}")
        console.print(slow)


@user_errors
def predictor_build_cmd(
    out: Path = typer.Option(..., "--out", help="predictor file to write (JSON)"),
    resolution: list[int] = typer.Option(..., help="input resolution(s) to cover; repeat for several"),
    url: str | None = typer.Option(None, help="latency service URL"),
    device: str | None = typer.Option(None, help="device profile (name or YAML): measure here, in-process"),
    on: str | None = typer.Option(None, "--on", help="with --url: the device or pool at the service (default: its only one)"),
    token: str | None = typer.Option(None, envvar="MNAS_LATENCY_TOKEN"),
    num_classes: int = typer.Option(1000, min=1, help="classifier outputs of the measured models"),
    layers: int | None = typer.Option(None, min=0, help="layer configurations measured alone per resolution (the rest are "
                                         "regressed); default 0 where whole models are profiled per operator, else 400"),
    models: int = typer.Option(100, min=5, help="whole models measured per resolution (the correction and memory fit)"),
    profiled_models: int | None = typer.Option(None, min=0, help="whole models profiled per operator per resolution, for "
                                                  "each layer's time inside a model (onnxruntime profiles measured here; default "
                                                  "500; 0: layer times alone only)"),
    seed: int = typer.Option(0),
    cache: Path | None = typer.Option(None, help="measurement cache (default OUT.cache.sqlite); a rerun resumes from it"),
    space: str = typer.Option("mnasnet", help="the search space whose layers it covers: a shipped name or a space YAML file"),
):
    """Build a latency and memory predictor for a device from per-layer and whole-model measurements."""
    from latency_service.client import LatencyServiceError, make_measurer
    from mnas.space import load_space
    from search.latency.predictor import build_predictor, save

    searched = load_space(space)
    try:
        source = make_measurer(url=url, device=device, token=token, target=on)
        try:
            doc = build_predictor(source, searched, resolution, num_classes, cache or out.with_suffix(".cache.sqlite"),
                                  layers, models, profiled_models, seed, log=lambda line: console.print(line, soft_wrap=True))
        finally:
            source.close()
    except LatencyServiceError as exc:
        raise MnasError(str(exc)) from None
    save(doc, out)
    for r, part in doc["resolutions"].items():
        v, b = part["validation"], part["build"]
        console.print(f"{r} px: {b['layers_measured']} of {b['layer_configs']} layer configs and {b['models_measured']} models measured, "
                      f"{b['models_profiled']} profiled ({b['fresh_measurements']} new) in {b['seconds']:.0f} s; layer times "
                      f"{part['layer_times']}, layer model {v['layer_model']['chosen']}; held-out models: "
                      f"latency {v['latency']['within_10pct']:.0%} within 10%, memory {v['memory']['within_10pct']:.0%} within 10%",
                      soft_wrap=True)
    console.print(f"wrote {out}")


@user_errors
def controllers_compare_cmd(
    table: str = typer.Option("cifar10-16px", "--table", help="a shipped table (search/tables/) or a table JSON file"),
    controllers: list[str] = typer.Option(["random", "evolution", "ppo"], "--controller", "-c",
                                          help="controllers to run (repeat the option); random always runs: it sets the bar"),
    proposals: int = typer.Option(300, min=1, help="proposals per controller and seed"),
    ax_proposals: int | None = typer.Option(None, min=1, help="fewer proposals for ax (each refits its model)"),
    seeds: list[int] = typer.Option([0, 1, 2], "--seed", help="seeds (repeat the option)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Compare controllers in seconds on a surrogate fitted to architectures really trained (search/surrogate.py)."""
    from dataclasses import asdict

    from search.controllers import controller_names
    from search.controllers.surrogate import compare, format_comparison, load_table

    unknown = [c for c in controllers if c not in controller_names()]
    if unknown:
        raise MnasError(f"unknown controller(s) {unknown}; use {', '.join(controller_names())}")
    try:
        loaded = load_table(table)
    except (OSError, ValueError, KeyError) as exc:
        raise MnasError(f"cannot read trial table {table!r}: {exc}") from None
    result = compare(loaded, controllers, proposals, seeds, ax_proposals, name=table)
    if as_json:
        sys.stdout.write(json.dumps(asdict(result), indent=2) + "\n")
    else:
        console.print(format_comparison(result), soft_wrap=True, highlight=False)


def controllers_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="Search controllers: compare them on real trial data.")
    sub.command("compare")(controllers_compare_cmd)
    return sub


def latency_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="Measure latency and memory on a target device.")
    sub.command("measure")(latency_measure_cmd)
    sub.command("predict")(latency_predict_cmd)
    sub.command("profile")(latency_profile_cmd)
    return sub


def predictor_app() -> typer.Typer:
    sub = typer.Typer(no_args_is_help=True, help="Latency and memory predictors built for your device.")
    sub.command("build")(predictor_build_cmd)
    return sub


SEARCH_COMMANDS = {
    "search": search_cmd, "stage2": stage2_cmd, "report": report_cmd, "status": status_cmd, "tune": tune_cmd,
    "estimate": estimate_cmd, "export": export_cmd, "dashboard": dashboard_cmd,
}


def build_app() -> typer.Typer:
    """The whole ``mnas`` command: model-side commands, ``latency``, and the search commands."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hardware-aware neural architecture search (MnasNet).")
    add_model_commands(app)
    from mnas.data_cli import data_app

    app.add_typer(data_app(), name="data")
    app.add_typer(latency_app(), name="latency")
    app.add_typer(predictor_app(), name="predictor")
    app.add_typer(controllers_app(), name="controllers")
    from search.proxy.cli import proxy_app

    app.add_typer(proxy_app(), name="proxy")
    from search.oneshot.cli import supernet_app

    app.add_typer(supernet_app(), name="supernet")
    for name, command in SEARCH_COMMANDS.items():
        app.command(name)(command)
    return app


app = build_app()

if __name__ == "__main__":
    app()
