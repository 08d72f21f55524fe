"""Measure, on the present accelerator, how proxy trials should run: precision, layout, packing.

Small models at proxy resolution leave a big GPU idle, and which settings win depends on the
GPU, the resolution and the batch size, so ``auto`` settings are decided by measuring
instead of by a table:

1. one process tries fp32/mixed precision (bf16, or fp16 where bf16 is not native) x NCHW/channels_last on a reference architecture (MnasNet-A1
   at the proxy's resolution, width and batch) and keeps the fastest;
2. then 1, 2, 4, 6, 8 processes train side by side, started together behind a file
   barrier; the count with the highest total images/s wins, unless the next step adds less
   than ``min_gain`` or would not fit in memory (each process's peak x ``headroom``, for
   architectures larger than the reference).

Every worker is a fresh subprocess (``python -m search.trials.tuning WORKER.json``), exactly like a
trial. The result is a dict that the search keeps as DIR/tuning.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mnas.errors import MnasError


class Tuning(BaseModel):
    """The measured choice (DIR/tuning.json holds it with every figure behind it)."""

    model_config = ConfigDict(extra="allow")

    precision: Literal["fp32", "bf16", "fp16"]
    channels_last: bool
    trials_per_gpu: int


def measured_settings(config, directory: Path, log=None) -> Tuning | None:
    """Precision, layout and packing for a search (a ``SearchConfig``), measured once.

    Measured on the first GPU when any of them is ``auto``, and kept in DIR/tuning.json,
    which a resumed search reuses. Without a GPU there is nothing to measure (None): CPU
    slots come from ``max_parallel_trials``.
    """
    from search.trials.executors import gpu_count

    proxy, packing = config.proxy, config.executor.trials_per_gpu
    if not ((proxy.tunable() or packing == "auto") and proxy.device in ("auto", "cuda") and gpu_count() > 0):
        return None
    path = Path(directory) / "tuning.json"
    if path.is_file():
        return Tuning.model_validate_json(path.read_text())
    if log:
        log("tuning: measuring precision, layout and trials per GPU on this GPU (once per experiment) ...")
    result = tune(proxy.model_dump(), "cuda:0", max_per_gpu=8 if packing == "auto" else 1)
    path.write_text(json.dumps(result, indent=1))
    if log:
        log(f"tuning: {result['precision']}, channels_last={result['channels_last']}, {result['trials_per_gpu']} trial(s) per GPU "
            f"({max(p.get('images_per_s', 0) for p in result['packing']):.0f} images/s in all; {result['seconds']:.0f} s)")
    return Tuning.model_validate(result)


def slots_per_gpu(executor, tuning: Tuning | None) -> int:
    """Trials packed on one GPU: the config's count, or the measured one for ``auto``."""
    if executor.trials_per_gpu != "auto":
        return executor.trials_per_gpu
    return tuning.trials_per_gpu if tuning else 1


# "auto": the GPU's mixed precision (bf16 where native, else fp16), resolved by the worker on the GPU itself
LAYOUTS = [("auto", True), ("auto", False), ("fp32", True), ("fp32", False)]
COUNTS = (1, 2, 4, 6, 8)


def tune(proxy: dict, device: str = "cuda", seconds: float = 6.0, max_per_gpu: int = 8, min_gain: float = 0.1,
         headroom: float = 2.0, layouts: list[tuple[str, bool]] | None = None, counts: tuple[int, ...] = COUNTS) -> dict:
    """Pick precision, channels_last and trials per GPU for ``proxy`` (a ProxyConfig dump)."""
    started = time.perf_counter()
    layouts = layouts or (LAYOUTS if device.startswith("cuda") else [("fp32", True), ("fp32", False)])
    if proxy.get("precision", "auto") != "auto":
        layouts = [lay for lay in layouts if lay[0] == proxy["precision"]] or [(proxy["precision"], True)]
    if proxy.get("channels_last") is not None:
        layouts = [lay for lay in layouts if lay[1] == proxy["channels_last"]] or [(layouts[0][0], proxy["channels_last"])]
    single = []
    for precision, channels_last in layouts:
        (r,) = run_together(1, {**_job(proxy, device, seconds), "precision": precision, "channels_last": channels_last})
        single.append({"precision": r["precision"], "channels_last": channels_last, "images_per_s": r["images_per_s"], "peak_mb": r["peak_mb"]})
    best = max(single, key=lambda s: s["images_per_s"])
    total_mb, name = r["total_mb"], r["device_name"]  # from the worker: this process never touches the GPU
    packing = [{"trials": 1, "images_per_s": best["images_per_s"], "per_trial": best["images_per_s"], "peak_mb": best["peak_mb"]}]
    chosen = packing[0]
    for n in [c for c in counts if 1 < c <= max_per_gpu]:
        need_mb = n * (best["peak_mb"] * headroom + 600)  # + 600 MB: each process's CUDA context
        if total_mb and need_mb > 0.9 * total_mb:
            packing.append({"trials": n, "skipped": f"would need ~{need_mb:.0f} MB of {total_mb:.0f}"})
            break
        results = run_together(n, {**_job(proxy, device, seconds), "precision": best["precision"], "channels_last": best["channels_last"]})
        total = sum(r["images_per_s"] for r in results)
        packing.append({"trials": n, "images_per_s": total, "per_trial": total / n, "peak_mb": max(r["peak_mb"] for r in results)})
        if total < chosen["images_per_s"] * (1 + min_gain):
            break
        chosen = packing[-1]
    return {
        "device": device, "device_name": name, "resolution": proxy.get("resolution"), "batch_size": proxy.get("batch_size"),
        "precision": best["precision"], "channels_last": best["channels_last"], "trials_per_gpu": chosen["trials"],
        "single": single, "packing": packing, "seconds": time.perf_counter() - started, "at": time.time(),
    }


def _job(proxy: dict, device: str, seconds: float) -> dict:
    return {"resolution": proxy.get("resolution", 32), "batch_size": proxy.get("batch_size", 128), "width_mult": proxy.get("width_mult", 1.0),
            "stride_cuts": proxy.get("stride_cuts"), "device": device, "seconds": seconds, "num_classes": 10}


def run_together(n: int, job: dict, timeout_s: float = 300) -> list[dict]:
    """Start ``n`` workers, let them warm up, time them over the same window."""
    with tempfile.TemporaryDirectory(prefix="mnas-tuning-") as tmp:
        tmp = Path(tmp)
        procs = []
        if not job["device"].startswith("cuda"):  # CPU workers split the cores between them
            from search.trials.executors import threads_per_trial

            job = {**job, "threads": threads_per_trial(n)}
        for k in range(n):
            spec = tmp / f"job{k}.json"
            spec.write_text(json.dumps({**job, "barrier": str(tmp / "go"), "ready": str(tmp / f"ready{k}"), "result": str(tmp / f"result{k}.json")}))
            procs.append(subprocess.Popen([sys.executable, "-m", "search.trials.tuning", str(spec)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          cwd=str(Path(__file__).resolve().parents[2]), env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        deadline = time.monotonic() + timeout_s
        try:
            while not all((tmp / f"ready{k}").exists() for k in range(n)):
                failed = [p for p in procs if p.poll() not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    err = failed[0].stderr.read().decode(errors="replace")[-800:] if failed else "timed out"
                    raise MnasError(f"tuning worker failed before timing: {err}")
                time.sleep(0.05)
            (tmp / "go").touch()
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        results = []
        for k, p in enumerate(procs):
            path = tmp / f"result{k}.json"
            if not path.is_file():
                raise MnasError(f"tuning worker {k} exited with {p.returncode}: {p.stderr.read().decode(errors='replace')[-800:]}")
            results.append(json.loads(path.read_text()))
        return results


def worker(job: dict) -> dict:
    """Train the reference model on random images: warm up, wait at the barrier, time a window."""
    import torch

    from devices.worker import memory_kb
    from mnas.accel import plan_execution
    from mnas.model import build_model, small_input_cuts
    from mnas.presets import PRESETS
    from mnas.train import model_input, train_step

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    execution = plan_execution(job["device"], job["precision"], job["channels_last"])
    device, scaler = execution.device, execution.grad_scaler()
    res, batch = job["resolution"], job["batch_size"]
    cuts = job["stride_cuts"] if job["stride_cuts"] is not None else small_input_cuts(res)
    model = execution.place(build_model(PRESETS["mnasnet-a1"], job["num_classes"], job["width_mult"], 0.2, cuts))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (batch * 4, res, res, 3), dtype=torch.uint8, device=device)
    y = torch.randint(0, job["num_classes"], (batch * 4,), device=device)

    def step(i: int) -> None:
        sl = slice((i % 4) * batch, (i % 4 + 1) * batch)
        train_step(model, opt, model_input(x[sl], device, res, True, gen, job["channels_last"]), y[sl], execution, scaler=scaler)

    sync = execution.synchronize

    for i in range(5):
        step(i)
    sync()
    Path(job["ready"]).touch()
    while not Path(job["barrier"]).exists():
        time.sleep(0.01)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < job["seconds"] or steps < 3:
        step(steps)
        steps += 1
        if steps % 10 == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - t0
    if device.type == "cuda":
        peak, total, name = torch.cuda.max_memory_reserved(device) / 2**20, torch.cuda.mem_get_info(device)[1] / 2**20, torch.cuda.get_device_name(device)
    else:
        import platform

        peak, total, name = memory_kb("VmHWM") / 1024, None, platform.processor() or platform.machine()
    return {"precision": execution.precision, "images_per_s": steps * batch / elapsed, "steps": steps, "seconds": elapsed, "peak_mb": peak, "total_mb": total, "device_name": name}


def main() -> None:
    from mnas.files import write_atomic

    job = json.loads(Path(sys.argv[1]).read_text())
    write_atomic(job["result"], json.dumps(worker(job)))


if __name__ == "__main__":
    main()
