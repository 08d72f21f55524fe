"""A tiny but real search setup: digits, 8 px, one epoch, quick in-process ORT latency."""

import sqlite3
from pathlib import Path

import yaml

QUICK_PROFILE = """\
name: test-quick
backend: onnxruntime
threads: 1
warmup_runs: 2
timed_runs: 5
repeats: 1
max_cv: 10.0
max_remeasure: 0
timeout_s: 60
"""


def tiny_config(tmp: Path, **overrides) -> dict:
    profile = tmp / "quick.yaml"
    profile.write_text(QUICK_PROFILE)
    cfg = {
        "name": "tiny",
        "seed": 0,
        # a short BN recalibration (the split has 1,617 images)
        "proxy": {"data": "digits", "epochs": 1, "batch_size": 64, "resolution": 8, "width_mult": 0.35,
                  "bn_calibration_images": 256},
        "latency": {"device": str(profile), "resolution": 32},
        "reward": {"target_ms": 0.3, "mode": "soft"},
        "controller": {"type": "ppo", "batch": 2, "lr": 0.01},
        "max_trials": 6,
        "max_parallel_trials": 2,
        "trial_timeout_s": 300,
    }
    for key, value in overrides.items():
        other_controller = key == "controller" and value.get("type", "ppo") != cfg["controller"]["type"]
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and not other_controller:  # another kind has other options
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def counts(directory: Path) -> dict:
    db = Path(directory) / "experiment.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return dict(con.execute("SELECT status, COUNT(*) FROM trials WHERE stage = 1 GROUP BY status").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
