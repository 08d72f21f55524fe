"""Quantized export (int8 and dynamic, ONNX and TFLite): the files run in their runtimes, hold int8
tensors and agree with the float model of a small trained network; clear errors; int8 latency in a search."""

import pytest
import torch
from conftest import run_cli
from search_helpers import tiny_config, write_config

from mnas.data import load_dataset
from mnas.quantize import calibration_inputs, int8_tensors, quantize_model, run_file, top1_agreement
from mnas.space import load_space
from mnas.train import TrainConfig, train_model
from search.experiment.store import Store

RESOLUTION = 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny space's base network trained 3 epochs on digits at 16 px (a few seconds)."""
    from mnas.train import load_checkpoint

    out = tmp_path_factory.mktemp("trained")
    ds = load_dataset("digits")
    train, val = ds.stage1()
    arch = load_space("tiny").base
    cfg = TrainConfig(epochs=3, batch_size=32, resolution=RESOLUTION, stride_cuts=0, seed=0)
    metrics = train_model(arch, train, val, 10, cfg, out_dir=out)
    assert metrics["top1"] > 0.5
    return load_checkpoint(out / "checkpoint.pt"), calibration_inputs("digits", RESOLUTION, 64)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_files_run_hold_int8_tensors_and_agree_with_the_float_model(trained, tmp_path, fmt):
    model, inputs = trained
    path = quantize_model(model, tmp_path / f"m.{fmt}", fmt, RESOLUTION, "int8", inputs)
    assert int8_tensors(path) > 5
    logits = run_file(path, inputs[:4])
    assert logits.shape == (4, 10) and logits.dtype.kind == "f"  # float32 in and out
    assert top1_agreement(model, path, inputs) >= 0.8
    with torch.no_grad():
        float_logits = torch.cat([model(x) for x in inputs[:4]]).numpy()
    assert abs(logits - float_logits).max() > 0  # really quantized, not the float graph


def test_dynamic_onnx_quantizes_weights_only(trained, tmp_path):
    model, inputs = trained
    path = quantize_model(model, tmp_path / "d.onnx", "onnx", RESOLUTION, "dynamic", [])
    assert int8_tensors(path) > 5 and top1_agreement(model, path, inputs) >= 0.8


def test_cli_quantized_export_and_its_errors(tmp_path):
    out = tmp_path / "a1.onnx"
    r = run_cli("export", "mnasnet-a1", "--format", "onnx", "--resolution", "32", "--num-classes", "10", "--quantize", "int8",
                "--calibration", "digits", "--calibration-samples", "8", "--out", str(out))
    assert out.is_file() and "int8 tensors" in r.stdout and "agrees with the float model on" in r.stdout
    cases = [
        (["--quantize", "int8"], "needs --calibration DATA_SPEC"),
        (["--quantize", "int8", "--calibration", str(tmp_path / "nowhere")], "unknown data spec"),
        (["--quantize", "int8", "--calibration", f"npz:{tmp_path / 'nowhere'}"], "nowhere"),
        (["--quantize", "int4"], "--quantize must be int8 or dynamic"),
    ]
    from typer.testing import CliRunner

    from search.cli import app

    for extra, message in cases:  # in this process: the user errors come before any heavy work
        r = CliRunner().invoke(app, ["export", "mobilenet-v2", "--format", "onnx", "--resolution", "32", "--out", str(tmp_path / "x.onnx"),
                                     *extra])
        assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_search_measures_the_int8_model_and_stage2_and_export_test_it_quantized(tmp_path):
    import json

    from search.config import ConfigError, parse_config

    cfg = tiny_config(tmp_path, max_trials=1, max_parallel_trials=1, controller={"type": "random"}, latency={"quantize": "int8"})
    out = tmp_path / "exp"
    run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out), "--no-progress")
    (trial,) = Store(out).trials()
    assert trial["status"] == "succeeded" and trial["metrics"]["latency"]["quantize"] == "int8" and trial["latency_ms"] > 0
    with pytest.raises(ConfigError, match="a predictor predicts the float model"):
        parse_config(tiny_config(tmp_path, latency={"quantize": "int8", "predictor": str(tmp_path / "p.json")}))

    # int8 from the config's latency.quantize; 6 epochs, quantization and two real measurements
    # took 5-7 minutes on a loaded 2-core VM, so the hang guard is wider than run_cli's default
    r = run_cli("stage2", str(out), "--top", "1", "--epochs", "6", timeout=900)
    assert "rank 1: test top-1" in r.stdout and "int8 onnx" in r.stdout
    (s2,) = Store(out).trials(stage=2)
    q = json.loads((out / "trials" / str(s2["id"]) / "quantized-int8.onnx.json").read_text())
    test_images = len(load_dataset("digits").test)
    assert q["images"] == test_images and q["int8_tensors"] > 5 and 0.0 < q["top1"] <= 1.0
    assert q["float_top1"] == pytest.approx(s2["accuracy"], abs=1.5 / test_images)  # the same model on the same test split
    # a 40-50%-accurate tiny model (8 px; 0.41 float / 0.39 int8 with agreement 0.54 on an AMD EPYC VM,
    # above 0.6 on an Intel one): a broken quantization collapses to chance (~10-20%) on both counts
    assert q["agreement"] >= 0.4 and abs(q["top1"] - q["float_top1"]) <= 0.15, json.dumps(q)

    winners = tmp_path / "winners"
    run_cli("export", str(out), "--top", "1", "--format", "onnx", "--quantize", "int8", "--out", str(winners))
    info = json.loads((winners / f"rank1-trial{s2['id']}-int8.json").read_text())
    assert info["quantized"]["onnx"]["top1"] == q["top1"] and info["quantized"]["onnx"]["latency_ms"] > 0  # reused, then measured
    assert int8_tensors(winners / f"rank1-trial{s2['id']}-int8.onnx") > 5 and info["float_accuracy"] == s2["accuracy"]


def test_a_device_that_does_not_run_int8_refuses_an_int8_search(tmp_path):
    import yaml

    from devices.profile import load_profile

    profile = load_profile("x86-ort-1t-quick").model_dump() | {"name": "float-only", "precisions": ["float32"]}
    path = tmp_path / "float-only.yaml"
    path.write_text(yaml.safe_dump(profile))
    assert load_profile(path).settings_hash() == load_profile("x86-ort-1t-quick").model_copy(update={"name": "float-only"}).settings_hash()
    cfg = tiny_config(tmp_path, max_trials=1, latency={"quantize": "int8", "device": str(path)})
    r = run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(tmp_path / "exp"), "--no-progress", check=False)
    assert r.returncode == 2 and "device float-only runs only float32" in r.stderr and "Traceback" not in r.stderr
