"""Post-training quantization of exported models: what phones and onnxruntime deployments run.

- ``int8``: static quantization, per-channel int8 weights and int8 activations, calibrated on
  real images (``calibration_inputs``: N training images of a data spec, preprocessed as for
  evaluation). TFLite through litert-torch's PT2E path (``torch.export`` -> ``prepare_pt2e`` ->
  calibrate -> ``convert_pt2e`` -> ``litert_torch.convert`` with the quantizer), which
  quantizes the PyTorch graph directly; ONNX through onnxruntime's ``quantize_static`` (QDQ
  format, per-channel, S8S8) on the float export.
- ``dynamic``: int8 weights, activations quantized at run time (onnxruntime's
  ``quantize_dynamic``; PT2E's dynamic config for TFLite).

A quantized TFLite file may take and give int8 tensors (the input's quantization is folded
into the graph); ``run_file`` quantizes inputs and dequantizes outputs with the tensors' own
scales, and the latency workers feed each input in its own type. For latency alone, calibration data only sets the scales, not the
graph: random inputs give the same operators and tensor types (``random_inputs``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from mnas.errors import ExportError
from mnas.files import atomic_path

MODES = ("int8", "dynamic")


def calibration_inputs(spec: str, resolution: int, samples: int = 256, seed: int = 0) -> list[torch.Tensor]:
    """``samples`` training images of a data spec (a seeded random draw) as 1 x 3 x R x R
    float inputs, normalised as for evaluation."""
    from mnas.data import load_dataset

    return source_inputs(load_dataset(spec).train, resolution, samples, seed)


def source_inputs(source, resolution: int, samples: int = 256, seed: int = 0) -> list[torch.Tensor]:
    """``samples`` images of a data source (a seeded random draw), as ``calibration_inputs``."""
    if samples < 1:
        raise ExportError(f"--calibration-samples must be at least 1 (got {samples})")
    keep = np.sort(np.random.default_rng(seed).permutation(len(source))[:samples])
    return [x[i : i + 1] for x, _ in eval_batches(source.subset(keep), resolution) for i in range(len(x))]


def eval_batches(source, resolution: int, batch_size: int = 64):
    """(float NCHW inputs, labels) of a data source in order, preprocessed as for evaluation."""
    from mnas.data import prepare_batch

    for x, y in source.batches(batch_size, shuffle=False, seed=0, resolution=resolution):
        yield prepare_batch(x, resolution, train=False), y


def random_inputs(resolution: int, samples: int = 8, seed: int = 0) -> list[torch.Tensor]:
    """Stand-in calibration for latency measurement: the quantized graph does not depend on it."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, resolution, resolution, generator=g) for _ in range(samples)]


def quantize_model(model: torch.nn.Module, out: str | Path, fmt: str, resolution: int, mode: str,
                   calibration: list[torch.Tensor]) -> Path:
    """Write ``model`` quantized (``mode`` int8 or dynamic) to ``out`` in ``fmt`` (onnx or tflite)."""
    if mode not in MODES:
        raise ExportError(f"unknown quantization {mode!r}; use one of {', '.join(MODES)}")
    if mode == "int8" and not calibration:
        raise ExportError("int8 quantization needs calibration inputs")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu", torch.float32)
    try:
        if fmt == "onnx":
            _onnx(model, out, resolution, mode, calibration)
        elif fmt == "tflite":
            _tflite(model, out, resolution, mode, calibration)
        else:
            raise ExportError(f"unknown export format {fmt!r}; use onnx or tflite")
    except ExportError:
        raise
    except Exception as exc:  # the quantizers raise many types; name the step
        raise ExportError(f"{mode} {fmt} quantization failed: {type(exc).__name__}: {exc}") from exc
    return out


def _onnx(model, out: Path, resolution: int, mode: str, calibration) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mnas.export import INPUT_NAME, export_model

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{INPUT_NAME: x.numpy()} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix="mnas-quant-") as tmp:
        float_path, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        export_model(model, float_path, "onnx", resolution)
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True)
        else:
            quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def _tflite(model, out: Path, resolution: int, mode: str, calibration) -> None:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = (calibration[0] if calibration else torch.randn(1, 3, resolution, resolution),)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=mode == "dynamic"))
    graph = torch.export.export(model, example).module()
    graph = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in calibration or [example[0]]:
            graph(x)
    graph = convert_pt2e(graph, fold_quantize=False)
    with atomic_path(out) as tmp:
        litert_torch.convert(graph, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(tmp))


def int8_tensors(path: str | Path) -> int:
    """How many int8 tensors a model file holds (weights, and activations for TFLite)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        return sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8)
    from ai_edge_litert.interpreter import Interpreter

    return sum(1 for t in Interpreter(model_path=str(path)).get_tensor_details() if t["dtype"] == np.int8)


def run_file(path: str | Path, inputs: list[torch.Tensor]) -> np.ndarray:
    """Logits of a model file (onnxruntime or LiteRT, one thread) for 1 x 3 x R x R inputs."""
    run = file_runner(path)
    return np.concatenate([run(x.numpy()) for x in inputs])


def file_runner(path: str | Path):
    """A function from one 1 x 3 x R x R float array to the file's float logits (one thread)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp["index"], _to_tensor_type(x, inp))
        interpreter.invoke()
        return _from_tensor_type(interpreter.get_tensor(outp["index"]), outp)

    return run


def file_accuracy(path: str | Path, model: torch.nn.Module, source, resolution: int) -> dict:
    """Top-1 of a model file on a labelled source, beside the float PyTorch model's top-1 on
    the same images and the share of images where both pick the same class."""
    run = file_runner(path)
    model = model.eval()
    hits = float_hits = same = n = 0
    with torch.no_grad():
        for x, y in eval_batches(source, resolution):
            reference = model(x).argmax(1).numpy()
            predicted = np.array([run(x[i : i + 1].numpy()).argmax() for i in range(len(x))])
            labels = y.numpy()
            hits += int((predicted == labels).sum())
            float_hits += int((reference == labels).sum())
            same += int((predicted == reference).sum())
            n += len(labels)
    if n == 0:
        raise ExportError("no images to evaluate the quantized model on")
    return {"top1": hits / n, "float_top1": float_hits / n, "agreement": same / n, "images": n}


def _to_tensor_type(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float input for a tensor that may be integer (a full-integer model quantizes its input)."""
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])
    return x.astype(detail["dtype"])


def _from_tensor_type(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.copy()


def top1_agreement(model: torch.nn.Module, path: str | Path, inputs: list[torch.Tensor]) -> float:
    """Share of inputs on which the file's top-1 class equals the float PyTorch model's."""
    with torch.no_grad():
        reference = torch.cat([model.eval()(x) for x in inputs]).argmax(1).numpy()
    return float((run_file(path, inputs).argmax(1) == reference).mean())
