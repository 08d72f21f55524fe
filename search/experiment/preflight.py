"""``mnas proxy check``: the final checks before a search spends its budget.

1. The dataset: the best-practice guide advises against architecture search on small or
   highly imbalanced data. Warned (with the numbers, ``mnas.data_info.data_warnings``) when
   the share of the stage-1 training split the proxy trains on is small or imbalanced.
2. The latency source answers (and a predictor file suits it).
3. The largest architecture of the space (by multiply-adds) trains at the proxy's batch,
   resolution, width and precision without running out of memory, and its estimated trial
   time fits ``trial_timeout_s``: a few real training steps in a fresh process (an
   out-of-memory error stays there), timed, then scaled to the trial's steps.

Problems (3 fails) refuse the proxy with a message; findings (1) are warnings. A search
runs 1 and 2 at its start, and 3 as well when it trains on a GPU, where a model that does
not fit would fail mid-search.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mnas.arch import Architecture

PROBE_STEPS = 6
TRIAL_OVERHEAD_S = 10.0  # process start, export, latency measurement: measured ~5-10 s a trial on CPU


@dataclass
class CheckReport:
    facts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def largest_architecture(space, resolution: int) -> Architecture:
    """The space's architecture with the most multiply-adds."""
    from mnas.layers import extreme_architecture

    return extreme_architecture(space, resolution, largest=True)


def check_dataset(config, report: CheckReport, labels=None, num_classes: int | None = None) -> None:
    """Warn about small or imbalanced data; ``labels`` (the stage-1 training labels) saves loading it."""
    import numpy as np

    if labels is None:
        from mnas.data import load_dataset

        dataset = load_dataset(config.proxy.data)
        train, _ = dataset.stage1(config.proxy.split_seed, config.proxy.val_fraction)
        labels, num_classes = train.labels, dataset.num_classes
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    share = config.proxy.data_fraction
    n, low, high = int(counts.sum() * share), int(counts.min() * share), int(counts.max() * share)
    report.facts.update(train_images=n, smallest_class=low, largest_class=high)
    from mnas.data_info import data_warnings

    report.warnings += data_warnings(n, low, high, what="the proxy trains on")
    report.facts["num_classes"] = int(num_classes)


def check_latency_source(config, num_classes: int, report: CheckReport) -> None:
    from latency_service.client import LatencyServiceError
    from mnas.errors import MnasError
    from search.experiment.directory import check_predictor

    try:
        measurer = config.latency.measurer()
        try:
            device = measurer.devices()[0]
        finally:
            measurer.close()
        if config.latency.predictor:
            check_predictor(config, device, num_classes)
        report.facts["latency_device"] = device["name"]
    except (LatencyServiceError, MnasError) as exc:
        report.problems.append(f"latency source unusable: {exc}")


def probe_largest(config, num_classes: int, report: CheckReport, train_images: int, val_images: int) -> None:
    """Train the largest architecture a few steps in a fresh process; refuse an impossible proxy."""
    proxy = config.proxy
    arch = largest_architecture(config.space.build(), proxy.resolution)
    cfg = proxy.train_config(config.seed)
    request = {"architecture": arch.to_dict(), "train": cfg.model_dump(mode="json"), "num_classes": num_classes, "steps": PROBE_STEPS}
    with tempfile.TemporaryDirectory(prefix="mnas-check-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        limit = min(600.0, config.trial_timeout_s + 60)
        try:
            proc = subprocess.run([sys.executable, "-m", "search.experiment.preflight", str(req), str(res)], capture_output=True, text=True,
                                  timeout=limit)
        except subprocess.TimeoutExpired:
            report.problems.append(f"the largest architecture did not finish {PROBE_STEPS} training steps in {limit:.0f} s")
            return
        if not res.is_file():
            report.problems.append(f"the probe of the largest architecture crashed: {(proc.stderr or '').strip().splitlines()[-1:]}")
            return
        result = json.loads(res.read_text())
    report.facts["largest"] = {"architecture": arch.summary(), **{k: v for k, v in result.items() if k != "error"}}
    if result.get("oom"):
        report.problems.append(f"the largest architecture of the space does not fit in memory at batch {proxy.batch_size}, "
                               f"{proxy.resolution} px, width {proxy.width_mult:g} ({result['error']}); lower the batch size or the width")
        return
    if result.get("error"):
        report.problems.append(f"the largest architecture fails to train: {result['error']}")
        return
    steps = math.ceil(train_images / proxy.batch_size) * proxy.epochs
    eval_steps = math.ceil(val_images / (2 * proxy.batch_size)) + math.ceil(proxy.bn_calibration_images / proxy.batch_size)
    estimate = steps * result["step_s"] + eval_steps * result["step_s"] / 3 + TRIAL_OVERHEAD_S
    report.facts["largest_trial_s"] = estimate
    if estimate > config.trial_timeout_s:
        report.problems.append(f"the largest architecture would take ~{estimate:.0f} s a trial ({steps} steps x {result['step_s']:.3f} s), "
                               f"over trial_timeout_s {config.trial_timeout_s:g}; raise trial_timeout_s or make the proxy cheaper")


def run_checks(config, probe: bool = True) -> CheckReport:
    report = CheckReport()
    check_dataset(config, report)
    check_latency_source(config, report.facts["num_classes"], report)
    if probe:
        val = round(report.facts["train_images"] / config.proxy.data_fraction / (1 - config.proxy.val_fraction) * config.proxy.val_fraction)
        probe_largest(config, report.facts["num_classes"], report, report.facts["train_images"], val)
    return report


def search_start_checks(config, context, log) -> None:
    """What a search checks at its start (the latency source is checked by prepare_trials):
    the data's size and balance (warnings), and on a GPU the largest architecture's memory and
    trial time (a refusal: better now than as failures mid-search)."""
    import numpy as np

    from mnas.errors import MnasError
    from search.trials.executors import gpu_count

    report = CheckReport()
    cache = Path(context.data.cache) if context.data.cache else None
    if cache is None:
        return  # image folders: counted by mnas proxy check, not at every start
    y_train = np.load(cache / "y_train.npy", mmap_mode="r")
    check_dataset(config, report, y_train, context.num_classes)
    for w in report.warnings:
        log(f"warning: {w}")
    if config.proxy.device in ("auto", "cuda") and gpu_count() > 0:
        val = len(np.load(cache / "y_val.npy", mmap_mode="r"))
        probe_largest(config, context.num_classes, report, report.facts["train_images"], val)
        if report.problems:
            raise MnasError("; ".join(report.problems) + " (mnas proxy check CONFIG shows the details)")


def probe_worker(request: dict) -> dict:
    """A few training steps of one architecture at the recipe's batch: time per step, peak memory."""
    import torch

    from devices.worker import memory_kb
    from mnas.accel import plan_for
    from mnas.model import build_model
    from mnas.recipe import TrainConfig
    from mnas.train import model_input, train_step

    cfg = TrainConfig(**request["train"])
    try:
        execution = plan_for(cfg)
        device = execution.device
        model = execution.place(build_model(Architecture.from_dict(request["architecture"]), request["num_classes"], cfg.width_mult,
                                            cfg.dropout, cfg.cuts()))
        scaler = execution.grad_scaler()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randint(0, 256, (cfg.batch_size, cfg.resolution, cfg.resolution, 3), dtype=torch.uint8)
        y = torch.randint(0, request["num_classes"], (cfg.batch_size,), device=device)
        times = []
        for _ in range(request["steps"]):
            t0 = time.perf_counter()
            train_step(model, optimizer, model_input(x, device, cfg.resolution, True, None, execution.channels_last), y, execution,
                       scaler=scaler)
            execution.synchronize()
            times.append(time.perf_counter() - t0)
        steady = sorted(times[2:] or times)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else memory_kb("VmHWM") / 1024
        total = torch.cuda.get_device_properties(device).total_memory / 2**20 if device.type == "cuda" else None
        return {"step_s": steady[len(steady) // 2], "peak_mb": peak, "device_mb": total, "device": str(device)}
    except Exception as exc:  # the probe reports; the parent decides
        oom = type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc) or isinstance(exc, MemoryError)
        return {"oom": oom, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(probe_worker(json.loads(Path(sys.argv[1]).read_text()))))
