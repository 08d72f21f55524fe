"""The CLI contract, run as a user runs it (the installed console script)."""

import json

import numpy as np
import onnxruntime as ort
from conftest import run_cli


def test_arch_info_json_for_presets():
    a1 = json.loads(run_cli("arch", "info", "mnasnet-a1", "--json").stdout)
    assert a1["params"] == 3_887_038 and 305e6 < a1["macs"] < 318e6
    assert a1["blocks"][2] == "ir_r3_k5_s2_e3_c40_se0.25"
    b1 = json.loads(run_cli("arch", "info", "mnasnet-b1", "--json", "--resolution", "32", "--num-classes", "10").stdout)
    assert b1["params"] == 4_383_312 - 1281 * 990 and b1["resolution"] == 32
    half = json.loads(run_cli("arch", "info", "mobilenet-v2", "--json", "--width-mult", "0.5").stdout)
    assert half["params"] < 2.0e6 and half["width_mult"] == 0.5


def test_arch_info_from_timm_strings_and_json_file(tmp_path):
    out = json.loads(run_cli("arch", "info", "ds_r1_k3_s1_c16,ir_r2_k3_s2_e6_c24", "--json").stdout)
    assert out["blocks"] == ["ds_r1_k3_s1_c16", "ir_r2_k3_s2_e6_c24"]
    sample = run_cli("space", "sample", "--seed", "7", "--json").stdout
    path = tmp_path / "arch.json"
    path.write_text(sample)
    info = json.loads(run_cli("arch", "info", str(path), "--json").stdout)
    assert info["architecture"] == json.loads(sample)


def test_space_info_and_sample():
    info = json.loads(run_cli("space", "info", "--json").stdout)
    assert info["num_blocks"] == 7 and abs(info["size_log10"] - 18.448) < 0.01 and len(info["tokens"]) == 42
    a = json.loads(run_cli("space", "sample", "--seed", "1", "--json").stdout)
    b = json.loads(run_cli("space", "sample", "--seed", "1", "--json").stdout)
    c = json.loads(run_cli("space", "sample", "--seed", "2", "--json").stdout)
    assert a == b != c and len(a["blocks"]) == 7


def test_export_onnx_runs(tmp_path):
    out = tmp_path / "b1.onnx"
    run_cli("export", "mnasnet-b1", "--format", "onnx", "--out", str(out), "--resolution", "96")
    session = ort.InferenceSession(str(out))
    y = session.run(None, {"input": np.zeros((1, 3, 96, 96), np.float32)})[0]
    assert y.shape == (1, 1000)


def test_user_errors_are_one_line_without_traceback(tmp_path):
    cases = [
        (("arch", "info", "nasnet-z"), "not a preset"),
        (("arch", "info", "ir_r2_k9_s2_e6_c24"), "blocks.0.kernel"),
        (("arch", "info", "mnasnet-a1", "--resolution", "2"), "--resolution"),
        (("export", "mnasnet-a1", "--format", "pt", "--out", str(tmp_path / "m.pt")), "unknown export format"),
        (("train", "mnasnet-a1", "--data", f"npz:{tmp_path / 'none'}", "--epochs", "1"), "npz data folder not found"),
        (("train", "mnasnet-a1", "--data", "cifar", "--epochs", "1"), "unknown data spec"),
    ]
    for args, message in cases:
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_train_writes_checkpoint_and_metrics(tmp_path):
    out = tmp_path / "run"
    run_cli("train", "mobilenet-v2", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--limit", "640", "--resolution", "16",
            "--width-mult", "0.35", "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_images"] == 640 and metrics["eval_images"] == 360 and metrics["epochs"] == 2
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["images_per_s"] > 0
    onnx_out = tmp_path / "trained.onnx"
    run_cli("export", "mobilenet-v2", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(onnx_out), "--resolution", "32")
    assert onnx_out.stat().st_size > 1e6
