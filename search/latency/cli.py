"""``mnas latency measure|predict|profile`` and ``mnas predictor build``: a device's latency and memory."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import typer

from mnas.cli import console, user_errors
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
