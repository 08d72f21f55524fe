"""The full ``mnas`` command: the model-side commands of mnas.cli plus latency and search.

Lives on the search side because it reaches the latency service's client, which the
model side (``mnas``) must not import.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from mnas.cli import app, console, user_errors
from mnas.errors import MnasError

latency_app = typer.Typer(no_args_is_help=True, help="Measure latency and memory on a target device.")
app.add_typer(latency_app, name="latency")

MODEL_SUFFIXES = {".onnx", ".tflite"}


@latency_app.command("measure")
@user_errors
def latency_measure_cmd(
    target: str = typer.Argument(..., help="a .onnx/.tflite file, or an architecture (preset, JSON file, timm strings)"),
    url: Optional[str] = typer.Option(None, help="latency service URL, e.g. http://127.0.0.1:8600"),
    device: Optional[str] = typer.Option(None, help="device profile YAML: measure here, in-process"),
    token: Optional[str] = typer.Option(None, envvar="MNAS_LATENCY_TOKEN", help="bearer token for the service"),
    resolution: int = typer.Option(224, help="input resolution when exporting an architecture"),
    num_classes: int = typer.Option(1000, help="classifier outputs when exporting an architecture"),
    input_shape: Optional[str] = typer.Option(None, help="override the model's input shape, e.g. 1,3,160,160"),
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
        measurer = make_measurer(url=url, device=device, token=token)
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
    from mnas.arch import load_architecture
    from mnas.export import export_architecture

    arch = load_architecture(target)
    fmt = measurer.model_format()
    with tempfile.TemporaryDirectory(prefix="mnas-export-") as tmp:
        path = export_architecture(arch, Path(tmp) / f"model.{fmt}", fmt, resolution, num_classes)
        return measurer.measure(path, shape)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
