"""Learning curves and early stopping: the rule on real numbers, per-epoch evaluation that
leaves training unchanged, and a real search that stops trials below the rule."""

import json

import pytest
from conftest import run_cli
from search_helpers import tiny_config, write_config

from search.config import EarlyStoppingConfig
from search.experiment.store import Store
from search.stages.early_stopping import stop_threshold


def curve(*top1s):
    return [{"epoch": i + 1, "top1": v} for i, v in enumerate(top1s)]


def test_percentile_and_median_rules():
    completed = [curve(v, v + 0.1, v + 0.2) for v in (0.5, 0.6, 0.7, 0.8, 0.9)]
    rule = EarlyStoppingConfig(percentile=25, min_epochs=1, min_completed=5)
    assert stop_threshold({"epoch": 1, "top1": 0.55}, completed, rule, epochs=3) == pytest.approx(0.6)  # 25th percentile of 0.5..0.9
    assert stop_threshold({"epoch": 1, "top1": 0.65}, completed, rule, epochs=3) is None  # above it: goes on
    assert stop_threshold({"epoch": 2, "top1": 0.65}, completed, rule, epochs=3) == pytest.approx(0.7)  # compared at its own epoch
    assert stop_threshold({"epoch": 3, "top1": 0.1}, completed, rule, epochs=3) is None  # the last epoch: nothing left to save
    median = EarlyStoppingConfig(rule="median", min_epochs=2, min_completed=5)
    assert stop_threshold({"epoch": 1, "top1": 0.1}, completed, median, epochs=3) is None  # before min_epochs
    assert stop_threshold({"epoch": 2, "top1": 0.75}, completed, median, epochs=3) == pytest.approx(0.8)  # median of 0.6..1.0
    assert stop_threshold({"epoch": 2, "top1": 0.85}, completed, median, epochs=3) is None
    assert stop_threshold({"epoch": 1, "top1": 0.1}, completed[:4], rule, epochs=3) is None  # too few completed trials


def test_per_epoch_evaluation_leaves_training_unchanged():
    from mnas.data import load_dataset
    from mnas.recipe import TrainConfig
    from mnas.space import SearchSpace
    from mnas.train import train_model

    data = load_dataset("digits")
    train, val = data.stage1(0, 0.1)
    cfg = TrainConfig(epochs=3, batch_size=64, resolution=8, width_mult=0.35, device="cpu")
    arch = SearchSpace().sample(4)
    plain = train_model(arch, train, val, data.num_classes, cfg)
    seen = []
    watched = train_model(arch, train, val, data.num_classes, cfg, on_epoch=seen.append)
    assert watched["top1"] == plain["top1"] and watched["train_loss"] == plain["train_loss"]
    assert [p["epoch"] for p in seen] == [1, 2, 3] and seen[-1]["top1"] == watched["top1"]
    assert all(0 <= p["top1"] <= 1 and p["loss"] > 0 for p in seen)


@pytest.mark.slow  # ~85 s of 4-epoch trials; the rule itself is tested above
def test_a_search_stops_trials_below_the_rule_and_resumes(tmp_path):
    cfg = tiny_config(tmp_path, max_trials=5, max_parallel_trials=1, controller={"type": "random"}, proxy={"epochs": 4},
                      early_stopping={"rule": "median", "min_epochs": 1, "min_completed": 2})
    out = tmp_path / "exp"
    run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out), "--no-progress", timeout=600)
    store = Store(out)
    trials, curves = store.trials(), store.curves(1)
    stopped = [t for t in trials if t["status"] == "early_stopped"]
    finished = [t for t in trials if t["status"] == "succeeded"]
    assert len(stopped) >= 1 and len(finished) >= 2 and len(stopped) + len(finished) == 5, [t["status"] for t in trials]
    for t in finished:  # every epoch of a full training is in the store, the last one is the trial's accuracy
        assert [p["epoch"] for p in curves[t["id"]]] == [1, 2, 3, 4] and curves[t["id"]][-1]["top1"] == t["accuracy"]
    for t in stopped:
        how = t["metrics"]["early_stopped"]
        assert how["top1"] < how["threshold"] and how["epoch"] < 4 and how["completed"] >= 2
        assert t["accuracy"] == how["top1"] and t["latency_ms"] > 0 and t["reward"] is not None
        assert [p["epoch"] for p in curves[t["id"]]][: how["epoch"]] == list(range(1, how["epoch"] + 1))
    kinds = [k for _, k, _ in store.events_after(0)]
    assert kinds.count("tell") == 5  # the controller hears of the stopped trials too (their last evaluation's reward)
    status = json.loads(run_cli("status", str(out), "--json").stdout)
    assert status["early_stopped"] == len(stopped) and status["succeeded"] == len(finished)
    run_cli("report", str(out))
    page = (out / "report" / "index.html").read_text()
    assert 'id="learning_curves"' in page and f"{len(stopped)} stopped early" in page
    run_cli("search", str(write_config(tmp_path / "more.yaml", {**cfg, "max_trials": 6})), "--resume", str(out), "--no-progress",
            timeout=600)
    after = Store(out).trials()
    assert len(after) == 6 and all(t["status"] in ("succeeded", "early_stopped") for t in after)
    assert [k for _, k, _ in Store(out).events_after(0)].count("tell") == 6
