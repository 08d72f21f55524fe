import json

import torch

from mnas.data import load_dataset
from mnas.presets import PRESETS
from mnas.space import SearchSpace
from mnas.train import TrainConfig, load_checkpoint, lr_at, train_model


def test_training_learns_digits_and_writes_checkpoint(tmp_path):
    ds = load_dataset("digits")
    train, val = ds.stage1()
    cfg = TrainConfig(epochs=3, batch_size=32, resolution=16, width_mult=0.5)  # ~15 s here; top-1 ~0.7 (A1 at width 0.35: 0.67)
    metrics = train_model(PRESETS["mnasnet-a1"], train, val, ds.num_classes, cfg, out_dir=tmp_path)
    assert metrics["top1"] > 0.5  # chance is 0.1
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert metrics["images_per_s"] > 0 and metrics["eval_images"] == len(val) == 144
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["top1"] == metrics["top1"] and saved["precision"] == "fp32"
    model = load_checkpoint(tmp_path / "checkpoint.pt")
    assert model.classifier.out_features == 10
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)


def test_training_is_reproducible():
    ds = load_dataset("digits")
    train, val = ds.stage1()
    arch = SearchSpace().sample(4)
    cfg = TrainConfig(epochs=1, batch_size=128, resolution=8, width_mult=0.5, seed=3)
    a = train_model(arch, train, val, 10, cfg)
    b = train_model(arch, train, val, 10, cfg)
    assert a["top1"] == b["top1"] and a["train_loss"] == b["train_loss"]


def test_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 0.2, 5) for s in range(100)]
    assert lrs[0] == 0.2 / 5 and lrs[4] == 0.2
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] < 0.001
    assert TrainConfig(batch_size=128).peak_lr() == 0.1
