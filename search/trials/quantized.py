"""Accuracy after post-training quantization of a trained trial: the model a phone would run.

A stage-2 checkpoint is quantized (``mnas.quantize``) with calibration images drawn from the
stage-2 training data, run in its runtime (onnxruntime or LiteRT) on the test split, and
compared with the float model on the same images. The result is kept beside the checkpoint
(``quantized-MODE.FMT.json`` with the file ``model-MODE.FMT``), so stage 2 and the export of
the winners reuse it instead of quantizing again.
"""

from __future__ import annotations

import json
from pathlib import Path

from mnas.errors import MnasError
from search.trials.spec import TrialData

CALIBRATION_SAMPLES = 256


def quantized_paths(trial_dir: Path, mode: str, fmt: str) -> tuple[Path, Path]:
    """(the quantized model file, its accuracy record) of a trial."""
    return trial_dir / f"model-{mode}.{fmt}", trial_dir / f"quantized-{mode}.{fmt}.json"


def quantized_accuracy(trial_dir: Path, data: TrialData, mode: str, fmt: str,
                       samples: int = CALIBRATION_SAMPLES) -> dict:
    """Quantize ``trial_dir/checkpoint.pt`` and test it: {top1, float_top1, agreement, images,
    mode, format, file, int8_tensors}; cached in the trial's directory."""
    from mnas.quantize import file_accuracy, int8_tensors, quantize_model, source_inputs
    from mnas.train import load_trained
    from search.trials.data import load_trial_data

    model_file, record = quantized_paths(trial_dir, mode, fmt)
    if record.is_file() and model_file.is_file():
        return json.loads(record.read_text())
    ckpt = trial_dir / "checkpoint.pt"
    if not ckpt.is_file():
        raise MnasError(f"stage-2 checkpoint missing: {ckpt}")
    model, recipe = load_trained(ckpt)
    resolution = recipe.resolution
    train, test, _ = load_trial_data(data, stage=2)
    calibration = source_inputs(train, resolution, samples)
    quantize_model(model, model_file, fmt, resolution, mode, calibration)
    result = {"mode": mode, "format": fmt, "resolution": resolution, "calibration_images": len(calibration),
              **file_accuracy(model_file, model, test, resolution), "file": model_file.name,
              "int8_tensors": int8_tensors(model_file)}
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(record)
    return result
