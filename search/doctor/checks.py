"""Short real runs of every path a machine can take, each ending in pass, fail or not run.

Every check is a function that does the real thing on a tiny task (digits at 8-16 px, the
``tiny`` space, a 16 px model to export) and returns a one-line result, or raises: the
exception's first line becomes the reason of a failure. A check that needs what the machine
lacks (a GPU, adb, a runtime) is listed as not run, with what it needs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

PASS, FAIL, NOT_RUN = "pass", "fail", "not run"


@dataclass
class Check:
    name: str
    status: str
    seconds: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


class NotRun(Exception):
    """The check cannot run on this machine; the message says what it needs."""


def run_check(name: str, fn: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        reason, status = fn(), PASS
    except NotRun as exc:
        reason, status = str(exc), NOT_RUN
    except Exception as exc:  # noqa: BLE001  (a doctor reports every failure as one line and goes on)
        text = str(exc).strip().splitlines()
        reason, status = f"{type(exc).__name__}: {text[0] if text else ''}", FAIL
    return Check(name, status, time.perf_counter() - started, reason)


# ----- proxy trials ----------------------------------------------------------------------------
def proxy_trial(device: str, precision: str, channels_last: bool, data_on_device: bool | None = False) -> str:
    """One epoch of MnasNet-A1 (width 0.35) on 512 digits at 16 px, evaluated after BN recalibration."""
    import math

    import numpy as np

    from mnas.data import load_dataset
    from mnas.presets import PRESETS
    from mnas.recipe import TrainConfig
    from mnas.train import train_model

    data = load_dataset("digits")
    train, val = data.stage1()
    train, val = train.subset(np.arange(512)), val.subset(np.arange(128))  # enough to show the path works, in seconds
    cfg = TrainConfig(epochs=1, batch_size=64, resolution=16, width_mult=0.35, device=device, precision=precision,
                      channels_last=channels_last, data_on_device=data_on_device, bn_calibration_images=512)
    m = train_model(PRESETS["mnasnet-a1"], train, val, data.num_classes, cfg)
    if not math.isfinite(m["train_loss"]):
        raise RuntimeError(f"training loss {m['train_loss']}")
    where = "split on the GPU" if m["data_on_device"] else "split on the host"
    return f"{m['precision']}, top-1 {m['top1']:.3f} after 1 epoch, {m['images_per_s']:.0f} images/s, {where}"


# ----- the supernet: a kill and a resume, then a one-shot evaluation ---------------------------------
def supernet_config(work: Path, device: str):
    from search.config import parse_config

    return parse_config({
        "name": "doctor", "seed": 0, "space": "tiny", "evaluator": "supernet",
        "proxy": {"data": "digits", "epochs": 1, "batch_size": 128, "resolution": 8, "width_mult": 1.0, "data_fraction": 0.3,
                  "bn_calibration_images": 256, "device": device},
        "latency": {"device": "x86-ort-1t-quick", "resolution": 32},
        "reward": {"target_ms": 0.3, "mode": "soft"},
        "controller": {"type": "evolution", "population": 4, "tournament": 2},
        "supernet": {"epochs": 2, "random_paths": 1, "bn_images": 256},
        "max_trials": 4,
    }, "mnas doctor")


def supernet_resume(work: Path, device: str) -> str:
    """Two epochs straight, and one epoch + a stop + a resume: the weights must be equal."""
    import torch

    from search.oneshot.training import read_checkpoint, train_supernet

    config = supernet_config(work, device)
    straight = train_supernet(config, work / "straight")
    train_supernet(config, work / "resumed", stop_after_epochs=1)
    train_supernet(config, work / "resumed")
    a, b = read_checkpoint(work / "straight")["model"], read_checkpoint(work / "resumed")["model"]
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    if differ:
        raise RuntimeError(f"the resumed supernet differs from the straight one in {len(differ)} of {len(a)} tensors (first: {differ[0]})")
    return f"2 epochs straight = 1 epoch, stop, resume ({len(a)} tensors equal; {straight['train_seconds']:.1f} s of training)"


def oneshot_evaluation(work: Path, device: str) -> str:
    import numpy as np

    from search.oneshot.evaluator import SupernetEvaluator

    config = supernet_config(work, device)
    if not (work / "straight" / "supernet.json").is_file():
        raise NotRun("needs the supernet check's trained supernet")
    evaluator = SupernetEvaluator(config, work / "straight")
    space = evaluator.net.space
    result = evaluator.evaluate(space.sample(np.random.default_rng(0)))
    return f"a sampled path: top-1 {result['top1']:.3f} in {result['seconds']:.2f} s (BN recomputed, {result['images']} images)"


# ----- export and measurement ----------------------------------------------------------------------
QUICK_PROFILE = {"threads": 1, "warmup_runs": 3, "timed_runs": 10, "repeats": 1, "max_cv": 50.0, "max_remeasure": 0, "timeout_s": 120}


def export_and_measure(work: Path, backend: str) -> str:
    from devices.measure import measure_file
    from devices.profile import DeviceProfile
    from mnas.export import export_architecture
    from mnas.presets import PRESETS

    fmt = "onnx" if backend == "onnxruntime" else "tflite"
    path = export_architecture(PRESETS["mnasnet-a1"], work / f"a1-32.{fmt}", fmt, resolution=32, num_classes=10, width_mult=0.35, stride_cuts=2)
    profile = DeviceProfile.model_validate({"name": f"doctor-{backend}", "backend": backend, **QUICK_PROFILE})
    m = measure_file(profile, path)
    return f"MnasNet-A1 x0.35 at 32 px: {m['latency_ms']:.3f} ms, peak {m.get('peak_memory_mb') or 0:.0f} MB ({m['runtime']['name']} {m['runtime']['version']})"


def service_round_trip(work: Path) -> str:
    """Start ``mnas-latency serve`` on a free loopback port, measure a model through the client, stop it."""
    import socket

    import httpx

    from latency_service.client import LatencyClient

    exe = shutil.which("mnas-latency") or str(Path(sys.executable).with_name("mnas-latency"))
    model = work / "a1-32.onnx"
    if not model.is_file():
        raise NotRun("needs the onnxruntime check's exported model")
    profile = work / "service-profile.yaml"
    profile.write_text("name: doctor-service\nbackend: onnxruntime\n" + "".join(f"{k}: {v}\n" for k, v in QUICK_PROFILE.items()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (work / "service.log").open("w")
    proc = subprocess.Popen([exe, "serve", "--device", str(profile), "--port", str(port), "--db", str(work / "service.sqlite")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited ({proc.returncode}): {(work / 'service.log').read_text()[-300:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not answer /healthz within 60 s")
            time.sleep(0.2)
        with LatencyClient(url, timeout_s=120) as client:
            first = client.measure(model)
            again = client.measure(model)
        cached = "answered from its cache" if again.get("cached") else "measured again"
        return f"{url}: {first['latency_ms']:.3f} ms on {first['device']['name']}; the second request {cached}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# ----- GPU-only paths -----------------------------------------------------------------------------
def packed_trials(seconds: float = 4.0) -> str:
    """Two trials on one GPU against one: the packing a search measures before it starts."""
    from search.trials.tuning import tune

    proxy = {"resolution": 32, "batch_size": 256, "width_mult": 1.0, "precision": "auto", "channels_last": True}
    r = tune(proxy, "cuda:0", seconds=seconds, max_per_gpu=2, counts=(1, 2), layouts=[("auto", True)])
    rows = {p["trials"]: p for p in r["packing"] if "images_per_s" in p}
    if 2 not in rows:
        raise RuntimeError(f"two packed trials did not run: {r['packing']}")
    return f"1 trial {rows[1]['images_per_s']:.0f} images/s, 2 packed {rows[2]['images_per_s']:.0f} images/s in all ({r['precision']})"


def proxy_throughput(seconds: float = 8.0) -> str:
    """The P1 figure: trials/hour of the tuned setting against one naive fp32 NCHW trial per GPU."""
    from search.trials.tuning import tune

    proxy = {"resolution": 32, "batch_size": 256, "width_mult": 1.0, "precision": "auto", "channels_last": None}
    r = tune(proxy, "cuda:0", seconds=seconds, max_per_gpu=8)
    naive = next(s for s in r["single"] if s["precision"] == "fp32" and not s["channels_last"])
    best = max((p for p in r["packing"] if "images_per_s" in p), key=lambda p: p["images_per_s"])
    images_per_trial = 45_000 * 5  # a 5-epoch CIFAR-10 proxy trial on the 90% split
    per_hour = best["images_per_s"] * 3600 / images_per_trial
    return (f"{per_hour:.0f} five-epoch CIFAR-10 trials/hour per GPU ({r['precision']}, channels_last {r['channels_last']}, "
            f"{best['trials']} packed): {best['images_per_s'] / naive['images_per_s']:.1f}x one naive fp32 trial")


def gpu_checks(gpus: int, throughput: bool) -> list[tuple[str, Callable[[], str]]]:
    """The GPU paths; each says why it did not run when there is no GPU."""
    def needs_gpu(fn):
        def check():
            if not gpus:
                raise NotRun("no CUDA device")
            return fn()
        return check

    checks = []
    for precision in ("fp32", "auto"):
        for layout in (True, False):
            name = f"proxy trial, cuda, {'mixed precision' if precision == 'auto' else precision}, {'channels_last' if layout else 'NCHW'}"
            checks.append((name, needs_gpu(lambda p=precision, cl=layout: proxy_trial("cuda", p, cl, data_on_device=False))))
    checks.append(("fast data path (uint8 split on the GPU)", needs_gpu(lambda: proxy_trial("cuda", "auto", True, data_on_device=True))))
    checks.append(("packed trials on one GPU", needs_gpu(packed_trials)))

    def p1():
        if not throughput:
            raise NotRun("the proxy throughput runs with --gpu (about 2 minutes)")
        return proxy_throughput()

    checks.append(("proxy throughput (P1)", needs_gpu(p1)))
    return checks


def all_checks(work: Path, gpus: int, throughput: bool) -> list[tuple[str, Callable[[], str]]]:
    device = "cuda" if gpus else "cpu"
    return [
        ("proxy trial, cpu, fp32, channels_last", lambda: proxy_trial("cpu", "fp32", True)),
        ("proxy trial, cpu, fp32, NCHW", lambda: proxy_trial("cpu", "fp32", False)),
        *gpu_checks(gpus, throughput),
        (f"supernet kill and resume ({device})", lambda: supernet_resume(work / "supernet", device)),
        (f"one-shot evaluation ({device})", lambda: oneshot_evaluation(work / "supernet", device)),
        ("export + measure: onnxruntime", lambda: export_and_measure(work, "onnxruntime")),
        ("export + measure: LiteRT", lambda: export_and_measure(work, "litert")),
        ("latency service round trip", lambda: service_round_trip(work)),
    ]
