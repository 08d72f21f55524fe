"""The Docker image's install step (`pip install '.[latency]'`) in a fresh venv: no torch, and the service runs."""

import subprocess
import venv

import httpx
import pytest
from conftest import REPO
from service_helpers import Service, write_profile

from mnas.export import export_architecture
from mnas.presets import PRESETS

# what pip prints when it cannot reach an index (as opposed to a real install error, which must fail the test)
NETWORK_ERRORS = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable", "Max retries exceeded",
                  "ConnectTimeoutError", "Connection refused", "No route to host")


def test_latency_extra_installs_without_torch_and_serves(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--retries", "1", "--timeout", "30", f"{REPO}[latency]"],
                             capture_output=True, text=True, timeout=900)
    if install.returncode != 0 and any(sign in install.stderr for sign in NETWORK_ERRORS):
        pytest.skip(f"no package index reachable, so the extra cannot be installed: {install.stderr.strip().splitlines()[-1][:300]}")
    assert install.returncode == 0, install.stderr[-2000:]
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('torch') is None, u.find_spec('onnxruntime') is not None)"],
                           capture_output=True, text=True)
    assert probe.stdout.split() == ["True", "True"]  # the service image carries no PyTorch
    shipped = subprocess.run([str(py), "-c", "from devices.profile import load_profile; "
                              "print(load_profile('x86-ort-1t-steady').reference.path.stat().st_size)"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert shipped.returncode == 0 and int(shipped.stdout) > 10_000, shipped.stderr  # the reference model is in the package

    model = export_architecture(PRESETS["mobilenet-v2"], tmp_path / "mbv2.onnx", "onnx", resolution=32, num_classes=10)
    svc = Service(write_profile(tmp_path / "p.yaml"), tmp_path / "cache.sqlite", token="t0ken", exe=env_dir / "bin" / "mnas-latency")
    try:
        r = httpx.post(svc.url + "/v1/measure", files={"file": ("m.onnx", model.read_bytes())},
                       headers={"Authorization": "Bearer t0ken"}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["latency_ms"] > 0 and r.json()["cached"] is False
    finally:
        svc.stop()
