"""Export an experiment's winners: the top-k architectures by reward as model files, each
with a JSON of its architecture (and timm strings) and metrics. Quantized (``quantize``), the
files are the stage-2 trained winners after post-training quantization, and the JSON adds
their test accuracy as quantized and their latency measured on the search's latency source."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mnas.arch import Architecture
from mnas.errors import MnasError
from mnas.export import FORMATS, export_architecture, export_model
from search.experiment import queries
from search.experiment.directory import dataset_classes
from search.results.analysis import load_config_of, load_trials


def export_winners(directory: Path, out: Path, top: int, formats: list[str], resolution: int | None, use_stage2: bool = False,
                   quantize: str | None = None) -> list[Path]:
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise MnasError(f"unknown export format(s) {bad or formats}; use {', '.join(FORMATS)}")
    if quantize:
        return export_quantized_winners(directory, out, top, formats, quantize)
    cfg = load_config_of(directory)
    df = load_trials(directory)
    stage = 2 if use_stage2 else 1
    done = queries.top_distinct(df, top, stage, reward=cfg.reward)
    if done.empty:
        raise MnasError(f"{directory} has no succeeded stage-{stage} trials to export")
    num_classes = cfg.latency.num_classes or dataset_classes(directory) or 1000
    res = resolution or cfg.latency.resolution
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, (_, t) in enumerate(done.iterrows(), 1):
        arch = Architecture.from_dict(t.architecture)
        stem = out / f"rank{rank}-trial{int(t.id)}"
        for fmt in formats:
            target = stem.with_suffix(f".{fmt}")
            if use_stage2:
                from mnas.train import load_checkpoint

                ckpt = directory / "trials" / str(int(t.id)) / "checkpoint.pt"
                if not ckpt.is_file():
                    raise MnasError(f"stage-2 checkpoint missing: {ckpt}")
                written.append(export_model(load_checkpoint(ckpt), target, fmt, res))
            else:
                written.append(export_architecture(arch, target, fmt, res, num_classes))
        info = {"rank": rank, "trial": int(t.id), "stage": stage, "reward": t.reward, "accuracy": t.accuracy,
                "latency_ms": t.latency_ms, "memory_mb": t.memory_mb, "resolution": res, "weights": "stage-2 trained" if use_stage2 else "untrained",
                "timm_blocks": arch.to_timm(), "architecture": arch.to_dict()}
        if cfg.latency.predictor and pd.isna(t.latency_measured_ms):  # predicted in the search: a winner is measured for real
            info.update(predicted_latency_ms=t.latency_ms, predicted_memory_mb=t.memory_mb,
                        **measure_for_real(cfg, arch, res, cfg.latency.num_classes or num_classes))
        stem.with_suffix(".json").write_text(json.dumps(info, indent=2))
        written.append(stem.with_suffix(".json"))
    return written


def measure_for_real(cfg, arch: Architecture, resolution: int, num_classes: int) -> dict:
    """Latency and memory of ``arch`` measured on the search's latency source (not its predictor)."""
    from latency_service.client import LatencyServiceError
    from search.latency.measure import measure_latency

    try:
        result, _ = measure_latency(cfg.latency.model_copy(update={"resolution": resolution}), arch, num_classes)
    except LatencyServiceError as exc:
        raise MnasError(f"cannot measure the winner on the search's latency source: {exc}") from None
    return measured_figures(result)


def measured_figures(result: dict) -> dict:
    """What a winner's JSON keeps of a measurement."""
    return {"latency_ms": result["latency_ms"], "memory_mb": result["peak_memory_mb"], "measured_on": result["device"]}


def export_quantized_winners(directory: Path, out: Path, top: int, formats: list[str], mode: str) -> list[Path]:
    """The top-k stage-2 winners quantized, each with its quantized accuracy and latency."""
    from latency_service.client import LatencyServiceError
    from search.trials.spec import TrialData

    cfg = load_config_of(directory)
    done = queries.top_distinct(load_trials(directory), top, 2, reward=cfg.reward)
    if done.empty:
        raise MnasError(f"{directory} has no succeeded stage-2 trials: quantized export takes the trained winners; run mnas stage2 first")
    cache = directory / "data"
    data = TrialData.of(cfg.proxy, str(cache) if (cache / "meta.json").is_file() else None)
    out.mkdir(parents=True, exist_ok=True)
    try:
        measurer = cfg.latency.measurer()  # one client for every file
        try:
            return [path for rank, (_, t) in enumerate(done.iterrows(), 1)
                    for path in _export_quantized(directory, out, rank, t, data, formats, mode, measurer)]
        finally:
            measurer.close()
    except LatencyServiceError as exc:
        raise MnasError(f"cannot measure the quantized winners on the search's latency source: {exc}") from None


def _export_quantized(directory: Path, out: Path, rank: int, t, data, formats: list[str], mode: str, measurer) -> list[Path]:
    """One winner's quantized files and their JSON; measured where the source runs the format."""
    import shutil

    from search.trials.quantized import quantized_accuracy

    arch, trial_dir = Architecture.from_dict(t.architecture), directory / "trials" / str(int(t.id))
    stem = out / f"rank{rank}-trial{int(t.id)}-{mode}"
    info = {"rank": rank, "trial": int(t.id), "stage": 2, "reward": t.reward, "float_accuracy": t.accuracy,
            "float_latency_ms": t.latency_ms, "weights": f"stage-2 trained, {mode} quantized", "quantized": {},
            "timm_blocks": arch.to_timm(), "architecture": arch.to_dict()}
    written, runs = [], measurer.model_format()
    for fmt in formats:
        result = quantized_accuracy(trial_dir, data, mode, fmt)
        target = stem.with_suffix(f".{fmt}")
        shutil.copyfile(trial_dir / result["file"], target)
        written.append(target)
        measured = (measured_figures(measurer.measure(target)) if fmt == runs
                    else {"latency_ms": None, "note": f"the latency source runs {runs}, not .{fmt}"})
        info["quantized"][fmt] = {**{k: v for k, v in result.items() if k != "file"}, **measured}
    stem.with_suffix(".json").write_text(json.dumps(info, indent=2))
    return written + [stem.with_suffix(".json")]
