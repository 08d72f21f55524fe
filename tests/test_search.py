"""Real searches end to end: subprocess trials, in-process ORT latency, SQLite store."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from browser import CHROMIUM, chromium_page
from conftest import REPO, run_cli
from search_helpers import counts, tiny_config, write_config
from service_helpers import Service, write_profile

from mnas.space import SearchSpace
from search.config import ConfigError, load_config, parse_config
from search.controllers.base import Controller, Proposal
from search.experiment import queries
from search.experiment.directory import open_search
from search.experiment.store import Store
from search.stages.stage1 import run_search


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
    from search.results.analysis import load_trials, pareto_front

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


def test_reading_an_experiment_imports_no_torch(finished_search, tmp_path):
    """status, report and estimate --from only read the store: they start without PyTorch."""
    out, _ = finished_search
    big = write_config(tmp_path / "big.yaml", tiny_config(tmp_path, max_trials=100))
    for args in (["status", str(out), "--json"], ["report", str(out), "--top", "2"], ["estimate", str(big), "--from", str(out), "--json"]):
        code = ("import sys\nfrom search.cli import app\nsys.argv = ['mnas'] + sys.argv[1:]\n"
                "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                "print('torch imported' if 'torch' in sys.modules else 'no torch')")
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith("no torch"), (args, proc.stdout[-300:])
    top = (out / "report" / "top.csv").read_text().splitlines()
    assert len(top) == 3 and all(int(row.split(",")[5]) > 0 for row in top[1:])  # params, as the trials stored them


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
    run_cli("export", str(out), "--top", "2", "--format", "onnx", "--out", str(winners), "--checkpoint", "stage2", timeout=600)
    assert sorted(p.suffix for p in winners.iterdir()) == [".json", ".json", ".onnx", ".onnx"]
    info = json.loads(next(winners.glob("rank1-*.json")).read_text())
    assert info["stage"] == 2 and info["weights"] == "stage-2 trained" and info["timm_blocks"]
    # running it again trains nothing new
    run_cli("stage2", str(out), "--top", "2", "--epochs", "1", timeout=600)
    assert len(Store(out).trials(stage=2)) == 2


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: [state, ppid, ...]; [] once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _alive(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (the trials are the trial server's children)."""
    parents = {int(d.name): int(f[1]) for d in Path("/proc").glob("[0-9]*") if len(f := _stat(int(d.name))) > 1}
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_kill_9_and_resume(tmp_path):
    cfg_path = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path, max_trials=5))
    out = tmp_path / "exp"
    exe = Path(sys.executable).with_name("mnas")
    proc = subprocess.Popen([str(exe), "search", str(cfg_path), "--out", str(out), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 300
    while counts(out).get("succeeded", 0) < 2 or not any(_name(p).startswith("mnas-trial-") for p in descendants(proc.pid)):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    started = descendants(proc.pid)  # the trial server and its trials, named for ps (trials/ID)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the trial server and its trials end with their search (each trial waits on the search's pid), even mid-import
    deadline = time.time() + 5  # a trial takes longer than that to finish on its own
    while alive := [pid for pid in started if _alive(pid)]:
        assert time.time() < deadline, f"processes {alive} outlived their killed search"
        time.sleep(0.2)
    before = {t["id"]: t for t in Store(out).trials(status="succeeded")}
    assert len(before) >= 2
    # a killed search can be inspected: status and report read only the store
    status = json.loads(run_cli("status", str(out), "--json").stdout)
    assert status["succeeded"] == len(before) and status["failed"] == 0
    assert status["running"] + status["pending"] == len(Store(out).trials()) - len(before)  # the interrupted ones
    assert status["verdict"] == "keep going" and status["max_trials"] == 5
    run_cli("report", str(out))
    page = (out / "report" / "index.html").read_text()
    assert page.count("<img") == 5 and "data:image/png;base64," in page

    run_cli("search", "--resume", str(out), "--no-progress", timeout=600)
    store = Store(out)
    after = store.trials()
    assert len(after) == 5 and all(t["status"] == "succeeded" for t in after)
    for trial_id, t in before.items():  # finished trials were kept as they were
        assert store.trial(trial_id)["reward"] == t["reward"]
    kinds = [k for _, k, _ in store.events_after(0)]
    assert kinds.count("ask") == 5 and kinds.count("tell") == 5

    # resume again with a larger budget: the same experiment grows
    bigger = write_config(tmp_path / "bigger.yaml", tiny_config(tmp_path, max_trials=6))
    run_cli("search", str(bigger), "--resume", str(out), "--no-progress", timeout=600)
    assert counts(out) == {"succeeded": 6}
    # but the proxy task cannot change under a running search
    other = write_config(tmp_path / "other.yaml", tiny_config(tmp_path, max_trials=12, proxy={"epochs": 3}))
    r = run_cli("search", str(other), "--resume", str(out), check=False)
    assert r.returncode == 2 and "keeps its proxy" in r.stderr


def test_failing_trials_and_failure_budget(tmp_path):
    """The latency service rejects models over its upload limit: those trials fail, the
    search goes on, failures never reach the controller, and the budget stops it."""
    svc = Service(write_profile(tmp_path / "p.yaml"), tmp_path / "c.sqlite", extra=["--max-upload-mb", "4"])
    try:
        cfg = tiny_config(tmp_path, max_trials=12, max_failed_trials=1, max_parallel_trials=1,
                          latency={"url": svc.url, "device": None, "resolution": 32}, controller={"type": "random"})
        out = tmp_path / "exp"
        proc = run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out), "--no-progress", check=False, timeout=600)
    finally:
        svc.stop()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "failure budget exhausted: 2 failed trials > max_failed_trials 1" in proc.stdout
    store = Store(out)
    failed, ok = store.trials(status="failed"), store.trials(status="succeeded")
    assert len(failed) == 2 and len(ok) >= 1
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

    def tell(self, proposal, reward, outcome=None):
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
    controller = RepeatingController(SearchSpace().cardinalities)
    outcome = run_search(cfg, out, progress=False, controller=controller)
    trials = Store(out).trials()
    assert outcome.reason == "max_trials reached" and outcome.counts["succeeded"] == 3
    assert [t["cached_from"] for t in trials] == [None, trials[0]["id"], trials[0]["id"]]
    assert [t["worker"] for t in trials] == [f"cpu0@{socket.gethostname()}", "store", "store"]
    assert len({t["accuracy"] for t in trials}) == 1 and len(controller.told) == 3
    assert sorted(p.name for p in (out / "trials").iterdir()) == [str(trials[0]["id"])]  # trained once


@pytest.mark.slow  # Ray's executor is exercised in the default run by tests/test_loop.py
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
    for field, bad in (("width_mult", 9), ("precision", "fp8"), ("momentum", 1.5)):  # the recipe's own bounds (mnas.recipe)
        with pytest.raises(ConfigError, match=f"proxy.{field}"):
            parse_config({**base, "proxy": {**base["proxy"], field: bad}})
    assert parse_config(base).failure_budget() == 2  # a third of max_trials by default
    r = run_cli("search", str(write_config(tmp_path / "bad.yaml", {**base, "proxy": {**base["proxy"], "data": "npz:/no/such"}})), "--out", str(tmp_path / "x"), check=False)
    assert r.returncode == 2 and "npz data folder not found" in r.stderr


def test_shipped_configs_are_valid():
    for name in ("demo", "demo-pareto", "cifar10-proxy", "imagenet-mnasnet"):
        cfg = load_config(REPO / "search" / "configs" / f"{name}.yaml")
        assert cfg.max_trials >= 40
    assert load_config(REPO / "search" / "configs" / "imagenet-mnasnet.yaml").max_trials == 8000
    pareto = load_config(REPO / "search" / "configs" / "demo-pareto.yaml")
    assert pareto.reward.pareto and pareto.controller.type == "ax" and pareto.reward.target_range() == (0.2, 1.5)


def test_stop_rules_read_from_the_store(tmp_path):
    cfg = parse_config(tiny_config(tmp_path, max_trials=50, max_failed_trials=3, stop={"patience": 3, "failure_window": 5}))
    store = Store(tmp_path / "exp")
    arch = SearchSpace().sample(0).to_dict()

    def finish(reward):
        store.finish(store.add_trial(arch, f"k{reward}"), accuracy=reward, latency_ms=1.0, memory_mb=1.0, reward=reward, metrics={})

    for reward in (0.5, 0.7, 0.6, 0.65):
        finish(reward)
    assert store.best_trial(1)["reward"] == 0.7 and store.trials_since_best(1) == 2
    assert queries.stop_reason(store, cfg) is None  # best was 2 trials ago
    finish(0.1)
    assert queries.stop_reason(store, cfg) == "no improvement in the last 3 trials"
    fresh = parse_config(tiny_config(tmp_path, max_trials=50, max_failed_trials=3, stop={"failure_window": 5}))
    store.fail(store.add_trial(arch, "f0"), "boom", "error")
    assert queries.stop_reason(store, fresh) is None  # 1 of the last 5 failed: 20% is not > 20%
    store.fail(store.add_trial(arch, "f1"), "boom", "error")
    assert queries.stop_reason(store, fresh).startswith("too many failures: 2 of the last 5")
    for i in range(2, 4):
        store.fail(store.add_trial(arch, f"f{i}"), "boom", "error")
    assert queries.stop_reason(store, fresh).startswith("failure budget exhausted: 4 failed trials > max_failed_trials 3")


def test_status_advises_the_stop_the_search_would_make(tmp_path):
    """A failure rate the config allows is no reason to stop in `mnas status` either, and one it forbids is."""
    from search.results.analysis import load_experiment

    arch = SearchSpace().sample(0).to_dict()
    for rate, expected in ((0.5, "keep going"), (0.2, "stop: too many failures")):
        out = tmp_path / f"rate{rate}"
        cfg = parse_config(tiny_config(tmp_path, max_trials=50, max_failed_trials=40, stop={"failure_window": 10, "max_failure_rate": rate}))
        open_search(cfg, out, resume=False)
        store = Store(out)
        for i in range(10):  # 3 of 10 failed
            tid = store.add_trial(arch, f"k{i}")
            if i % 3 == 0 and i < 9:
                store.fail(tid, "boom", "error")
            else:
                store.finish(tid, accuracy=0.5, latency_ms=1.0, memory_mb=1.0, reward=0.5, metrics={})
        store.close()
        _, _, advice = load_experiment(out)
        assert advice["verdict"] == expected and advice["failed"] == 3
        status = json.loads(run_cli("status", str(out), "--json").stdout)
        assert status["verdict"] == expected


@pytest.mark.slow
def test_an_experiment_made_before_typed_trials_still_resumes(tmp_path):
    """tests/fixtures/experiment-before-typed-trials: a search run by mnas 1fbdbb8 (untyped
    trial dicts) and killed with SIGKILL after 4 of 5 trials, the 5th left running."""
    import shutil

    fixture = REPO / "tests" / "fixtures" / "experiment-before-typed-trials"
    out = tmp_path / "old"
    out.mkdir()
    shutil.copy(fixture / "experiment.sqlite", out)
    before = {t["id"]: t for t in Store(out).trials()}
    assert [t["status"] for t in before.values()] == ["succeeded"] * 4 + ["running"]
    status = json.loads(run_cli("status", str(out), "--json").stdout)
    assert (status["succeeded"], status["running"], status["verdict"]) == (4, 1, "keep going")
    run_cli("report", str(out), "--top", "2")  # its trials stored no sizes: the report counts them
    assert len((out / "report" / "top.csv").read_text().splitlines()) == 3

    run_cli("search", "--resume", str(out), "--no-progress", timeout=600)
    store = Store(out)
    after = store.trials()
    assert len(after) == 5 and all(t["status"] == "succeeded" for t in after)
    for trial_id in range(1, 5):  # finished trials are kept as they were
        assert store.trial(trial_id)["reward"] == before[trial_id]["reward"]
    assert store.trial(5)["architecture"] == before[5]["architecture"]  # the interrupted one ran again, same architecture
    # the controller was restored from its old checkpoint and replayed: it keeps proposing from there
    cfg = (fixture / "config.yaml").read_text().replace("max_trials: 5", "max_trials: 7")
    run_cli("search", str(write_config(tmp_path / "more.yaml", yaml.safe_load(cfg))), "--resume", str(out), "--no-progress", timeout=600)
    kinds = [k for _, k, _ in Store(out).events_after(0)]
    assert counts(out) == {"succeeded": 7} and kinds.count("ask") == 7 and kinds.count("tell") == 7
    assert Store(out).checkpoint_count() == 3  # PPO batch 2: one more update after trials 5 and 6


@pytest.mark.slow  # ~85 s: a predictor build, a search, export and stage 2
def test_a_hybrid_search_predicts_every_trial_and_measures_some(tmp_path):
    """latency.predictor + measure_every: every trial predicted, every 2nd also measured (both
    stored), predictions rescaled by the measurements so far; stage 2 measures for real."""
    from latency_service.client import make_measurer
    from search.latency.predictor import build_predictor, save

    cfg = tiny_config(tmp_path, max_trials=4, controller={"type": "random"})
    source = make_measurer(device=cfg["latency"]["device"])
    try:
        predictor = save(build_predictor(source, SearchSpace(), [32], 10, tmp_path / "cache.sqlite", layer_budget=20, models=6, profiled_models=0),
                         tmp_path / "pred.json")
    finally:
        source.close()
    cfg["latency"].update(predictor=str(predictor), measure_every=2)
    out = tmp_path / "exp"
    run_cli("search", str(write_config(tmp_path / "hybrid.yaml", cfg)), "--out", str(out), "--no-progress", timeout=600)
    trials = Store(out).trials()
    assert len(trials) == 4 and all(t["status"] == "succeeded" for t in trials)
    for t in trials:
        lat = t["metrics"]["latency"]
        after = lat.get("measured_after", False)  # a new best, measured once it had finished
        assert lat["predicted_ms"] > 0 and lat["measured"] == (t["id"] % 2 == 0 or after)
        if lat["measured"] and not after:  # measured in its trial: the real figure is what the reward uses
            assert t["latency_ms"] == lat["latency_ms"] and lat["device"]["name"] == "test-quick"
        else:  # predicted (a later measurement, if any, stands beside it; the reward stays as told)
            assert t["latency_ms"] == pytest.approx(lat["predicted_ms"] * lat["latency_scale"])
        if after:
            assert lat["device"]["name"] == "test-quick" and lat["latency_ms"] > 0
        assert t["reward"] == pytest.approx(t["accuracy"] * (t["latency_ms"] / 0.3) ** -0.07)
    pairs = Store(out).latency_pairs(1)
    assert len(pairs) == 2 + sum(t["metrics"]["latency"].get("measured_after", False) for t in trials)
    best = -1.0  # replay the completion order: exactly the predicted-only trials that were a new best were measured after
    for t in sorted(trials, key=lambda t: (t["ended"], t["id"])):
        lat = t["metrics"]["latency"]
        assert lat.get("measured_after", False) == (t["reward"] > best and t["id"] % 2 == 1), t["id"]
        best = max(best, t["reward"])
    later = [t["metrics"]["latency"]["latency_scale"] for t in trials if t["id"] >= 3]
    assert any(s != 1.0 for s in later)  # rescaled once measurements came in
    run_cli("report", str(out))
    assert 'id="predicted_vs_measured"' in (out / "report" / "index.html").read_text()
    # exported winners are measured for real, their predicted figures kept beside
    trials = Store(out).trials()
    predicted_only = next(t for t in sorted(trials, key=lambda t: -t["reward"]) if not t["metrics"]["latency"]["measured"])
    winners = tmp_path / "winners"
    run_cli("export", str(out), "--top", "4", "--format", "onnx", "--out", str(winners), timeout=600)
    info = json.loads(next(winners.glob(f"rank*-trial{predicted_only['id']}.json")).read_text())
    assert info["predicted_latency_ms"] == pytest.approx(predicted_only["latency_ms"]) and info["measured_on"]["name"] == "test-quick"
    assert info["latency_ms"] > 0 and info["latency_ms"] != info["predicted_latency_ms"]
    # stage 2 measures its winner for real
    run_cli("stage2", str(out), "--top", "1", "--epochs", "1", timeout=600)
    (s2,) = Store(out).trials(stage=2)
    assert s2["metrics"]["latency"]["device"]["name"] == "test-quick" and s2["latency_ms"] == s2["metrics"]["latency"]["latency_ms"]
    # a predictor made for another device is refused before any trial runs
    other = tmp_path / "other.yaml"
    other.write_text(Path(cfg["latency"]["device"]).read_text().replace("timed_runs: 5", "timed_runs: 6"))
    cfg["latency"]["device"] = str(other)
    r = run_cli("search", str(write_config(tmp_path / "wrong.yaml", cfg)), "--out", str(tmp_path / "wrong"), check=False)
    assert r.returncode == 2 and "was built for device test-quick" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow  # ~60 s; the tiny space is searched end to end by tests/test_supernet.py in the default run
def test_a_search_on_a_space_file_records_it_and_resumes_without_it(tmp_path):
    """`space: FILE`: the trials come from that space; its definition is stored with the experiment,
    so the search resumes after the file is gone, and cannot resume under another space."""
    import shutil

    from mnas.arch import Architecture
    from mnas.space import SPACES_DIR, load_space

    space_file = tmp_path / "my-space.yaml"
    shutil.copy(SPACES_DIR / "tiny.yaml", space_file)
    cfg = tiny_config(tmp_path, max_trials=3, max_parallel_trials=1, space=str(space_file), controller={"type": "random"})
    out = tmp_path / "exp"
    run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out), "--no-progress", timeout=600)
    tiny = load_space("tiny")
    trials = Store(out).trials()
    assert len(trials) == 3 and all(tiny.contains(Architecture.from_dict(t["architecture"])) for t in trials)
    assert all(len(t["indices"]) == len(tiny.tokens) == 15 for t in trials)
    stored = Store(out).get_meta("config")["space"]
    assert stored["definition"]["name"] == "tiny" and load_space(stored["definition"]) == tiny
    space_file.unlink()
    run_cli("search", str(write_config(tmp_path / "more.yaml", {**cfg, "max_trials": 4, "space": "tiny"})), "--resume", str(out),
            "--no-progress", timeout=600)  # the same space by its shipped name: accepted
    assert counts(out) == {"succeeded": 4}
    other = write_config(tmp_path / "other.yaml", {**cfg, "max_trials": 5, "space": "mnasnet"})
    r = run_cli("search", str(other), "--resume", str(out), check=False)
    assert r.returncode == 2 and "keeps its space" in r.stderr
