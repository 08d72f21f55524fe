"""Versions and devices: what the checks will run on."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess

PACKAGES = ("mnas", "torch", "torchvision", "onnx", "onnxruntime", "ai-edge-litert", "litert-torch", "ray", "ax-platform", "fastapi")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    import torch

    found["cuda (torch built with)"] = torch.version.cuda
    found["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    try:
        import onnxruntime

        found["onnxruntime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        pass
    return found


def gpus() -> list[dict]:
    """Every CUDA device torch sees, with the facts the precision rules use (mnas.accel)."""
    import torch

    from mnas.accel import DeviceFacts, choose_precision

    out = []
    for index in range(torch.cuda.device_count()):
        facts = DeviceFacts.probe(f"cuda:{index}")
        out.append({"index": index, "name": facts.name, "memory_mb": round(facts.memory_mb or 0),
                    "capability": ".".join(map(str, facts.capability or ())), "bf16": facts.bf16,
                    "auto precision": choose_precision("auto", facts)})
    return out


def phones(timeout_s: float = 10.0) -> list[dict] | str:
    """Android devices adb can reach, or why none can be listed."""
    adb = shutil.which("adb")
    if adb is None:
        return "adb not on PATH"
    try:
        listing = subprocess.run([adb, "devices", "-l"], capture_output=True, text=True, timeout=timeout_s).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"adb devices failed: {exc}"
    rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    return [{"serial": r[0], "state": r[1], "details": " ".join(r[2:])} for r in rows]


def services(urls: list[str], token: str | None) -> list[dict]:
    """Each configured latency service: reachable or not, and the devices it measures."""
    from latency_service.client import LatencyClient, LatencyServiceError

    out = []
    for url in urls:
        try:
            with LatencyClient(url, token=token, timeout_s=15, retries=0) as client:
                out.append({"url": url, "ok": True, "devices": [d.get("name") for d in client.devices()]})
        except (LatencyServiceError, OSError) as exc:
            out.append({"url": url, "ok": False, "error": str(exc).splitlines()[0]})
    return out

