"""Exported files run in the real runtimes and give PyTorch's outputs."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mnas.errors import ExportError
from mnas.export import export_model
from mnas.model import build_model
from mnas.presets import PRESETS
from mnas.space import SearchSpace

SPACE = SearchSpace()


def trained_like(arch, num_classes=1000, seed=0, resolution=64):
    """A model whose BN statistics are not the identity (calibrated on random batches)."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, resolution, resolution))
    return model.eval()


def onnx_output(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    return session.run(None, {"input": x.numpy()})[0]


def tflite_output(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], x.numpy())
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_onnx_presets_match_pytorch(name, tmp_path):
    model = trained_like(PRESETS[name], resolution=224)
    path = export_model(model, tmp_path / f"{name}.onnx", "onnx", resolution=224)
    onnx.checker.check_model(onnx.load(str(path)))
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob("*.partial"))  # one self-contained file
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(ref).max() > 0.1  # a real signal, not all zeros
    assert np.abs(onnx_output(path, x) - ref).max() <= 1e-4


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_onnx_random_architectures_match_pytorch(tmp_path_factory, seed):
    arch = SPACE.sample(seed)
    model = trained_like(arch, num_classes=10, seed=seed % 1000)
    path = export_model(model, tmp_path_factory.mktemp("onnx") / "m.onnx", "onnx", resolution=64)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(onnx_output(path, x) - ref).max() <= 1e-4, arch.summary()


def test_dynamo_exporter_gives_the_same_model(tmp_path):
    model = trained_like(PRESETS["mnasnet-a1"], num_classes=10)
    path = export_model(model, tmp_path / "a1.onnx", "onnx", resolution=64, exporter="dynamo")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(onnx_output(path, x) - ref).max() <= 1e-4


# one preset by default (A1: SE, 5x5 and every op kind); the others are the same converter path, slow
# all slow (~20 s each); LiteRT export is checked in the default run on sampled mobilenetv3-space architectures (test_spaces)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in sorted(PRESETS)])
def test_tflite_presets_match_pytorch(name, tmp_path):
    model = trained_like(PRESETS[name], resolution=224)
    path = export_model(model, tmp_path / f"{name}.tflite", "tflite", resolution=224)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(tflite_output(path, x) - ref).max() <= 1e-3


# slow: tests/test_spaces.py converts a random MobileNetV3-space architecture to TFLite in the default run
@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.slow) for s in (11, 12, 13)])
def test_tflite_random_architectures_match_pytorch(seed, tmp_path):
    model = trained_like(SPACE.sample(seed), num_classes=10, seed=seed, resolution=32)
    path = export_model(model, tmp_path / "m.tflite", "tflite", resolution=32)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(tflite_output(path, x) - ref).max() <= 1e-3


def test_export_errors_are_clear(tmp_path):
    model = build_model(PRESETS["mnasnet-a1"], num_classes=10)
    with pytest.raises(ExportError, match="unknown export format 'pt'"):
        export_model(model, tmp_path / "m.pt", "pt")
    with pytest.raises(ExportError, match="resolution"):
        export_model(model, tmp_path / "m.onnx", "onnx", resolution=2)
    with pytest.raises(ExportError, match="unknown ONNX exporter"):
        export_model(model, tmp_path / "m.onnx", "onnx", resolution=32, exporter="magic")
    assert not (tmp_path / "m.onnx").exists()
