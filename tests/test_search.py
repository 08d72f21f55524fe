"""Real searches end to end: subprocess trials, in-process ORT latency, SQLite store."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import CHROMIUM, chromium_page
from conftest import REPO, run_cli
from search.config import ConfigError, load_config, parse_config
from search.controllers.base import Controller, Proposal
from search.scheduler import Orchestrator, open_search
from search.store import Store
from search_helpers import counts, tiny_config, write_config
from service_helpers import Service, write_profile


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    cfg = write_config(tmp / "tiny.yaml", tiny_config(tmp))
    out = tmp / "exp"
    proc = run_cli("search", str(cfg), "--out", str(out), "--no-progress", "--tensorboard", timeout=600)
    return out, proc


def test_search_runs_and_records_everything(finished_search):
    out, proc = finished_search
    assert "max_trials reached" in proc.stdout and "best: trial" in proc.stdout
    store = Store(out)
    trials = store.trials()
    assert len(trials) == 6 and all(t["status"] == "succeeded" for t in trials)
    for t in trials:
        assert 0 <= t["accuracy"] <= 1 and t["latency_ms"] > 0 and t["memory_mb"] > 0
        assert t["reward"] == pytest.approx(t["accuracy"] * (t["latency_ms"] / 0.3) ** -0.07)
        assert t["worker"].startswith("cpu") and t["started"] <= t["ended"]
        assert t["metrics"]["latency"]["device"]["name"] == "test-quick"
        assert len(t["indices"]) == 42 and "logp" in t["meta"]
    assert store.checkpoint_count() == 3  # PPO batch 2 -> an update and a checkpoint every 2 results
    assert store.get_meta("config")["max_trials"] == 6
    kinds = [k for _, k, _ in store.events_after(0)]
    assert kinds.count("ask") == 6 and kinds.count("tell") == 6


def test_tensorboard_scalars(finished_search):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = finished_search
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"trial/reward", "trial/accuracy", "trial/latency_ms", "search/best_reward"} <= set(events.Tags()["scalars"])
    rewards = [e.value for e in events.Scalars("trial/reward")]
    assert len(rewards) == 6
    assert sorted(rewards) == pytest.approx(sorted(t["reward"] for t in Store(out).trials(stage=1)), rel=1e-6)
    best = [e.value for e in events.Scalars("search/best_reward")]
    assert best == sorted(best) and best[-1] == pytest.approx(max(rewards), rel=1e-6)


def test_report_and_status_on_a_finished_search(finished_search):
    out, _ = finished_search
    from search.analysis import load_trials, pareto_front

    df = load_trials(out)
    assert len(df) >= 6 and set(df.status) == {"succeeded"}
    front = pareto_front(df)
    assert 1 <= len(front) <= len(df) and list(front.latency_ms) == sorted(front.latency_ms)
    assert list(front.accuracy) == sorted(front.accuracy)  # each slower point must be more accurate
    run_cli("report", str(out), "--top", "3")
    page = (out / "report" / "index.html").read_text()
    for name in ("search_curve", "accuracy_latency", "latency_histogram", "memory_latency", "failures"):
        assert f'id="{name}"' in page and (out / "report" / f"{name}.png").stat().st_size > 5000
    top = (out / "report" / "top.csv").read_text().splitlines()
    assert len(top) == 4 and "params" in top[0] and "MMACs" in top[0]
    r = run_cli("status", str(out / "nope"), check=False)
    assert r.returncode == 2 and "not an experiment directory" in r.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_page_renders_in_chromium(finished_search):
    out, _ = finished_search
    run_cli("report", str(out), "--top", "3")
    with chromium_page() as page:
        page.goto((out / "report" / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])")
        rows = page.locator("table.top tbody tr").count()
        advice = page.locator("p.advice").inner_text()
        shot = page.screenshot(full_page=True)
    # every plot decoded by the browser into a real bitmap, not a broken-image icon
    assert [i[0] for i in images] == ["search_curve", "accuracy_latency", "latency_histogram", "memory_latency", "failures"]
    assert all(done and w >= 400 and h >= 200 for _, done, w, h in images), images
    assert rows == 3 and advice.startswith("Advice:")
    assert len(shot) > 50_000  # a full page of plots, not a blank one


def test_estimate_from_an_experiment(finished_search, tmp_path):
    out, _ = finished_search
    cfg = write_config(tmp_path / "big.yaml", tiny_config(tmp_path, max_trials=1000, max_parallel_trials=4))
    e = json.loads(run_cli("estimate", str(cfg), "--from", str(out), "--price", "3", "--json").stdout)
    seconds = [t["ended"] - t["started"] for t in Store(out).trials(stage=1, status="succeeded") if t["cached_from"] is None]
    avg = sum(seconds) / len(seconds)
    assert e["average_trial_s"] == pytest.approx(avg) and e["timed_trials"] == len(seconds)
    assert e["search_wall_hours"] == pytest.approx(1000 * avg / 4 / 3600)
    assert e["search_cost"] == pytest.approx(1000 * avg / 3600 * 3)
    assert e["stage2_epochs"] == 20 and e["stage2_gpu_hours"] > 0


def test_estimate_from_probe_trials(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, max_trials=100, max_parallel_trials=2))
    e = json.loads(run_cli("estimate", str(cfg), "--probe", "1", "--json", timeout=600).stdout)
    assert e["timed_trials"] == 1 and 0.5 < e["average_trial_s"] < 300
    assert e["search_wall_hours"] == pytest.approx(100 * e["average_trial_s"] / 2 / 3600)


def test_dashboard_serves_and_rebuilds_the_report(finished_search):
    import httpx

    from service_helpers import free_port

    out, _ = finished_search
    port = free_port()
    exe = Path(sys.executable).with_name("mnas")
    proc = subprocess.Popen([str(exe), "dashboard", str(out), "--port", str(port), "--refresh", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, page = time.time() + 60, None
        while page is None:
            assert time.time() < deadline and proc.poll() is None
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
            except httpx.TransportError:
                time.sleep(0.3)
        assert page.count("<img") == 5 and 'http-equiv="refresh"' in page
        first = httpx.get(f"http://127.0.0.1:{port}/api/status").json()
        # a rebuild takes seconds on a loaded 2-core machine: wait for the next one, not a fixed time
        deadline, second = time.time() + 60, first
        while second["report_built_at"] <= first["report_built_at"]:
            assert time.time() < deadline, "the dashboard never rebuilt the report"
            time.sleep(0.5)
            second = httpx.get(f"http://127.0.0.1:{port}/api/status").json()
        assert second["report_built_at"] > first["report_built_at"] and second["report_error"] is None
        assert second["succeeded"] >= 6
    finally:
        proc.terminate()
        proc.wait(10)


def test_stage2_trains_the_top_k(finished_search):
    out, _ = finished_search
    proc = run_cli("stage2", str(out), "--top", "2", "--epochs", "1", timeout=600)
    assert "stage 2: top 2" in proc.stdout
    store = Store(out)
    s2 = store.trials(stage=2)
    assert len(s2) == 2 and all(t["status"] == "succeeded" for t in s2)
    s1_best = sorted(store.trials(stage=1), key=lambda t: -t["reward"])[:2]
    assert {t["arch_key"] for t in s2} == {t["arch_key"] for t in s1_best}
    for t in s2:
        s1 = store.trial(t["meta"]["stage1_trial"])
        assert t["latency_ms"] == s1["latency_ms"] and t["metrics"]["train"]["eval_images"] == 360  # the digits test split
        assert (out / "trials" / str(t["id"]) / "checkpoint.pt").is_file()
    # the winners, with stage-2 weights, as model files and metrics JSON
    winners = out.parent / "winners"
    run_cli("export", str(out), "--top", "2", "--format", "onnx,tflite", "--out", str(winners), "--checkpoint", "stage2", timeout=600)
    assert sorted(p.suffix for p in winners.iterdir()) == [".json", ".json", ".onnx", ".onnx", ".tflite", ".tflite"]
    info = json.loads(next(winners.glob("rank1-*.json")).read_text())
    assert info["stage"] == 2 and info["weights"] == "stage-2 trained" and info["timm_blocks"]
    # running it again trains nothing new
    run_cli("stage2", str(out), "--top", "2", "--epochs", "1", timeout=600)
    assert len(Store(out).trials(stage=2)) == 2


def test_kill_9_and_resume(tmp_path):
    cfg_path = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path, max_trials=8))
    out = tmp_path / "exp"
    exe = Path(sys.executable).with_name("mnas")
    proc = subprocess.Popen([str(exe), "search", str(cfg_path), "--out", str(out), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 300
    while counts(out).get("succeeded", 0) < 3:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t["id"]: t for t in Store(out).trials(status="succeeded")}
    assert len(before) >= 3
    # a killed search can be inspected: status and report read only the store
    status = json.loads(run_cli("status", str(out), "--json").stdout)
    assert status["succeeded"] == len(before) and status["failed"] == 0
    assert status["running"] + status["pending"] == len(Store(out).trials()) - len(before)  # the interrupted ones
    assert status["verdict"] == "keep going" and status["max_trials"] == 8
    run_cli("report", str(out))
    page = (out / "report" / "index.html").read_text()
    assert page.count("<img") == 5 and "data:image/png;base64," in page
    # orphaned trial processes end with their search (PR_SET_PDEATHSIG), even mid-import
    deadline = time.time() + 15
    while subprocess.run(["pgrep", "-f", f"search.trial {out}"], capture_output=True, text=True).stdout.split():
        assert time.time() < deadline, "trial processes outlived their killed search"
        time.sleep(0.2)

    run_cli("search", "--resume", str(out), "--no-progress", timeout=600)
    store = Store(out)
    after = store.trials()
    assert len(after) == 8 and all(t["status"] == "succeeded" for t in after)
    for trial_id, t in before.items():  # finished trials were kept as they were
        assert store.trial(trial_id)["reward"] == t["reward"]
    kinds = [k for _, k, _ in store.events_after(0)]
    assert kinds.count("ask") == 8 and kinds.count("tell") == 8

    # resume again with a larger budget: the same experiment grows
    bigger = write_config(tmp_path / "bigger.yaml", tiny_config(tmp_path, max_trials=10))
    run_cli("search", str(bigger), "--resume", str(out), "--no-progress", timeout=600)
    assert counts(out) == {"succeeded": 10}
    # but the proxy task cannot change under a running search
    other = write_config(tmp_path / "other.yaml", tiny_config(tmp_path, max_trials=12, proxy={"epochs": 3}))
    r = run_cli("search", str(other), "--resume", str(out), check=False)
    assert r.returncode == 2 and "keeps its proxy" in r.stderr


def test_failing_trials_and_failure_budget(tmp_path):
    """The latency service rejects models over its upload limit: those trials fail, the
    search goes on, failures never reach the controller, and the budget stops it."""
    svc = Service(write_profile(tmp_path / "p.yaml"), tmp_path / "c.sqlite", extra=["--max-upload-mb", "9"])
    try:
        cfg = tiny_config(tmp_path, max_trials=12, max_failed_trials=2, max_parallel_trials=1,
                          latency={"url": svc.url, "device": None, "resolution": 32}, controller={"type": "random"})
        out = tmp_path / "exp"
        proc = run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out), "--no-progress", check=False, timeout=600)
    finally:
        svc.stop()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "failure budget exhausted: 3 failed trials > max_failed_trials 2" in proc.stdout
    store = Store(out)
    failed, ok = store.trials(status="failed"), store.trials(status="succeeded")
    assert len(failed) == 3 and len(ok) >= 1
    assert all(t["error_kind"] == "latency" and "limit" in t["error"] for t in failed)
    told = [tid for _, k, tid in store.events_after(0) if k == "tell"]
    assert sorted(told) == sorted(t["id"] for t in ok)


class RepeatingController(Controller):
    """Proposes one architecture over and over (to exercise the store's answers)."""

    name = "repeat"

    def __init__(self, cardinalities):
        super().__init__(cardinalities)
        self.told = []

    def ask(self):
        return Proposal([1] * len(self.cardinalities))

    def tell(self, proposal, reward):
        self.told.append(reward)
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_evaluated_architecture_is_answered_from_the_store(tmp_path):
    cfg = parse_config(tiny_config(tmp_path, max_trials=3, max_parallel_trials=1))
    out = tmp_path / "exp"
    open_search(cfg, out, resume=False)
    o = Orchestrator(cfg, out, progress=False)
    o.controller = RepeatingController(o.space.cardinalities)
    o.run()
    trials = Store(out).trials()
    assert [t["cached_from"] for t in trials] == [None, trials[0]["id"], trials[0]["id"]]
    assert len({t["accuracy"] for t in trials}) == 1 and len(o.controller.told) == 3
    assert sorted(p.name for p in (out / "trials").iterdir()) == [str(trials[0]["id"])]  # trained once


def test_ray_executor(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, max_trials=4))
    out = tmp_path / "exp"
    run_cli("search", str(cfg), "--out", str(out), "--executor", "ray", "--no-progress", timeout=600)
    trials = Store(out).trials()
    assert len(trials) == 4 and all(t["status"] == "succeeded" and t["worker"].startswith("ray:") for t in trials)


def test_config_errors_name_the_field(tmp_path):
    base = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match="controller.type"):
        parse_config({**base, "controller": {"type": "bayesian"}})
    with pytest.raises(ConfigError, match="latency: set exactly one"):
        parse_config({**base, "latency": {"url": "http://x", "device": "y"}})
    with pytest.raises(ConfigError, match="max_trials"):
        parse_config({k: v for k, v in base.items() if k != "max_trials"})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    assert parse_config(base).failure_budget() == 2  # a third of max_trials by default
    r = run_cli("search", str(write_config(tmp_path / "bad.yaml", {**base, "proxy": {**base["proxy"], "data": "npz:/no/such"}})), "--out", str(tmp_path / "x"), check=False)
    assert r.returncode == 2 and "npz data folder not found" in r.stderr


def test_shipped_configs_are_valid():
    for name in ("demo", "cifar10-proxy", "imagenet-mnasnet"):
        cfg = load_config(REPO / "search" / "configs" / f"{name}.yaml")
        assert cfg.max_trials >= 40
    assert load_config(REPO / "search" / "configs" / "imagenet-mnasnet.yaml").max_trials == 8000


def test_stop_rules_read_from_the_store(tmp_path):
    from collections import deque

    cfg = parse_config(tiny_config(tmp_path, max_trials=50, max_failed_trials=3, stop={"patience": 3, "failure_window": 5}))
    out = tmp_path / "exp"
    open_search(cfg, out, resume=False)
    o = Orchestrator(cfg, out, progress=False)
    arch = o.space.sample(0)
    for reward in (0.5, 0.7, 0.6, 0.65):
        tid = o.store.add_trial(arch.to_dict(), f"k{reward}")
        o.store.finish(tid, accuracy=reward, latency_ms=1.0, memory_mb=1.0, reward=reward, metrics={})
    assert o.best()["reward"] == 0.7
    assert o.stop_reason(o.store.counts(1), deque(maxlen=5)) is None  # best was 2 trials ago
    tid = o.store.add_trial(arch.to_dict(), "k-last")
    o.store.finish(tid, accuracy=0.1, latency_ms=1.0, memory_mb=1.0, reward=0.1, metrics={})
    assert o.stop_reason(o.store.counts(1), deque(maxlen=5)) == "no improvement in the last 3 trials"
    recent = deque([False, True, True, False, False], maxlen=5)  # 40% of the window failed
    assert o.stop_reason(o.store.counts(1), recent).startswith("too many failures: 2 of the last 5")
    for i in range(4):
        o.store.fail(o.store.add_trial(arch.to_dict(), f"f{i}"), "boom", "error")
    assert o.stop_reason(o.store.counts(1), deque(maxlen=5)).startswith("failure budget exhausted: 4 failed trials > max_failed_trials 3")
