"""Export a model to ONNX (onnxruntime) or TFLite (LiteRT), batch 1, NCHW float32 input.

ONNX uses the TorchScript exporter by default: ~0.5 s per mobile model against ~6 s for
the dynamo exporter, with the same onnxruntime results, which matters when a search exports
thousands of candidates. ``exporter="dynamo"`` selects the newer one. Either way the file
is self-contained (no external weights file).
TFLite goes straight from PyTorch through litert-torch (no TensorFlow, no network access).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from mnas.arch import Architecture
from mnas.errors import ExportError
from mnas.files import atomic_path
from mnas.model import build_model

FORMATS = ("onnx", "tflite")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_model(
    model: torch.nn.Module,
    out: str | Path,
    fmt: str = "onnx",
    resolution: int = 224,
    exporter: str = "torchscript",
    quiet: bool = True,
    input_shape: tuple[int, int, int, int] | None = None,
) -> Path:
    """Write ``model`` (set to eval mode on the CPU) to ``out`` in format ``fmt``.

    The input is ``1 x 3 x resolution x resolution`` unless ``input_shape`` says otherwise
    (a single layer's input, for per-layer measurement)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not 8 <= resolution <= 1024:
        raise ExportError(f"resolution must be between 8 and 1024 pixels (got {resolution})")
    if input_shape is not None and (len(input_shape) != 4 or input_shape[0] != 1 or min(input_shape) < 1):
        raise ExportError(f"input_shape must be 1 x C x H x W (got {input_shape})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu", torch.float32)
    example = torch.randn(*(input_shape or (1, 3, resolution, resolution)))
    try:
        with _silenced(quiet), atomic_path(out) as tmp:
            if fmt == "onnx":
                _to_onnx(model, example, tmp, exporter)
            else:
                _to_tflite(model, example, tmp)
    except ExportError:
        raise
    except Exception as exc:  # the exporters raise many types; name the step that failed
        raise ExportError(f"{fmt} export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        out.with_name(out.name + ".partial.data").unlink(missing_ok=True)  # external weights an exporter may leave beside it
    return out


def export_architecture(
    arch: Architecture,
    out: str | Path,
    fmt: str = "onnx",
    resolution: int = 224,
    num_classes: int = 1000,
    width_mult: float = 1.0,
    stride_cuts: int = 0,
) -> Path:
    """Build ``arch`` with fresh weights and export it (what latency measurement needs)."""
    model = build_model(arch, num_classes=num_classes, width_mult=width_mult, stride_cuts=stride_cuts)
    return export_model(model, out, fmt, resolution)


def _to_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, exporter: str) -> None:
    if exporter not in ("torchscript", "dynamo"):
        raise ExportError(f"unknown ONNX exporter {exporter!r}; use torchscript or dynamo")
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    if exporter == "dynamo":
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, **kwargs)
    else:
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17, **kwargs)


def _to_tflite(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import litert_torch
    except ImportError:
        raise ExportError("TFLite export needs litert-torch: pip install 'mnas[model]'") from None
    litert_torch.convert(model, (example,)).export(str(path))


@contextlib.contextmanager
def _silenced(quiet: bool):
    """Hide exporter chatter (deprecation notes, converter progress) unless asked for."""
    if not quiet:
        yield
        return
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
