"""The pieces every search method goes through: typed trial specs and results, the executor
interface (local processes and Ray, cancel and timeout included), and the CLI's assembly."""

import subprocess
import sys
import time

import pytest
from conftest import REPO, run_cli
from pydantic import ValidationError
from search_helpers import tiny_config

from mnas.presets import PRESETS
from mnas.space import SearchSpace
from search.config import parse_config
from search.trials.executors import LocalExecutor, RayExecutor
from search.trials.spec import TrialContext, TrialResult, TrialSpec


def context(tmp_path) -> TrialContext:
    return TrialContext.create(parse_config(tiny_config(tmp_path)), num_classes=10)


def test_a_spec_crosses_the_process_boundary_intact(tmp_path):
    spec = context(tmp_path).spec(7, SearchSpace().sample(3))
    again = TrialSpec.from_json(spec.to_json())
    assert again == spec and again.architecture == SearchSpace().sample(3)
    assert again.train.resolution == 8 and again.train.width_mult == 0.35 and again.latency.resolution == 32
    with pytest.raises(ValidationError, match="stage"):
        TrialSpec.model_validate({**spec.model_dump(), "stage": 3})


def test_a_result_says_how_it_ended():
    ok = TrialResult(status="succeeded", accuracy=0.5, latency_ms=1.0, memory_mb=2.0, metrics={"train": {"top1": 0.5}})
    assert TrialResult.from_json(ok.to_json()) == ok
    failed = TrialResult.failure("cuda_oom", "CUDA out of memory")
    assert failed.status == "failed" and failed.accuracy is None
    with pytest.raises(ValidationError, match="accuracy"):
        TrialResult(status="succeeded")
    with pytest.raises(ValidationError, match="error kind"):
        TrialResult(status="failed")
    with pytest.raises(ValidationError, match="error_kind"):
        TrialResult.failure("gremlins", "unknown kind")


def poll_all(executor, expected: int, limit_s: float = 240) -> dict:
    done, deadline = {}, time.monotonic() + limit_s
    while len(done) < expected:
        assert time.monotonic() < deadline, f"only {sorted(done)} finished"
        for f in executor.poll(timeout=0.5):
            assert f.trial_id not in done, "a trial came back twice"
            done[f.trial_id] = f
    return done


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_executors_run_and_cancel_trials(tmp_path, kind):
    ctx = context(tmp_path)
    short = ctx.spec(1, PRESETS["mobilenet-v2"], stage=2, epochs=1)
    endless = ctx.spec(2, PRESETS["mobilenet-v2"], stage=2, epochs=10_000)
    executor = LocalExecutor(tmp_path, 2, timeout_s=600) if kind == "local" else RayExecutor(tmp_path, 2, timeout_s=600)
    with executor:
        assert executor.capacity == 2 and executor.free_slots() == 2
        workers = [executor.submit(short), executor.submit(endless)]
        assert executor.running() == 2 and executor.free_slots() == 0
        assert all(w.startswith("cpu" if kind == "local" else "ray:") for w in workers)
        time.sleep(2)
        assert executor.cancel(2) and not executor.cancel(99)
        done = poll_all(executor, 2)
        assert executor.running() == 0 and executor.free_slots() == 2
    assert done[2].result.status == "failed" and done[2].result.error_kind == "cancelled"
    ok = done[1].result
    assert ok.status == "succeeded" and 0 <= ok.accuracy <= 1 and ok.metrics["train"]["eval_images"] == 360
    assert ok.latency_ms is None  # stage 2 trains only


def test_a_trial_over_its_time_limit_is_stopped(tmp_path):
    endless = context(tmp_path).spec(5, PRESETS["mobilenet-v2"], stage=2, epochs=10_000)
    with LocalExecutor(tmp_path, 1, timeout_s=3) as executor:
        executor.submit(endless)
        proc = executor.procs[5].proc
        done = poll_all(executor, 1, limit_s=60)
    assert done[5].result.error_kind == "timeout" and "trial_timeout_s = 3 s" in done[5].result.error
    assert proc.poll() is not None  # the process is gone, not left running


def test_python_m_search_cli_is_the_mnas_command():
    module = subprocess.run([sys.executable, "-m", "search.cli", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    script = run_cli("--help")
    assert module.returncode == 0, module.stderr

    def commands(text):
        return sorted(line.split()[1] for line in text.splitlines() if line.startswith("│ ") and len(line.split()) > 2)

    names = commands(script.stdout)
    assert names == commands(module.stdout)
    assert {"arch", "space", "train", "latency", "search", "stage2", "report", "status", "tune", "estimate", "export", "dashboard"} <= set(names)
    # a search-side command through the module, as a user would run it
    search_help = subprocess.run([sys.executable, "-m", "search.cli", "search", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert search_help.returncode == 0 and "--resume" in search_help.stdout
    info = subprocess.run([sys.executable, "-m", "search.cli", "space", "info", "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert info.stdout == run_cli("space", "info", "--json").stdout


def test_training_pauses_while_another_trial_measures(tmp_path):
    from search.latency.quiet import FLAG, pause_while_measuring

    pause = pause_while_measuring(tmp_path)
    t0 = time.monotonic()
    pause()  # nobody measures: no wait
    assert time.monotonic() - t0 < 0.05
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom search.latency.quiet import measuring_alone\n"
                               f"with measuring_alone({str(tmp_path)!r}):\n    time.sleep(1.5)"], cwd=REPO)
    deadline = time.monotonic() + 30
    while not (tmp_path / FLAG).exists():
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.01)
    t0 = time.monotonic()
    pause()  # waits for the measurement to end
    waited = time.monotonic() - t0
    holder.wait(30)
    assert 0.5 < waited < 5 and not (tmp_path / FLAG).exists()
    (tmp_path / FLAG).write_text("999999")  # left by a process that died mid-measurement
    t0 = time.monotonic()
    pause()
    assert time.monotonic() - t0 < 0.5 and not (tmp_path / FLAG).exists()


def test_trial_status_says_once_which_statuses_end_a_trial_and_carry_a_reward(tmp_path):
    from search.experiment.queries import REWARDED_SQL
    from search.experiment.store import Store
    from search.trials.spec import FINISHED, TrialResult, TrialStatus

    assert [s.value for s in TrialStatus if s.carries_reward] == ["succeeded", "early_stopped"] == list(TrialStatus.rewarded())
    assert FINISHED == ("succeeded", "failed", "early_stopped", "prefiltered") and not TrialStatus.RUNNING.finished
    assert REWARDED_SQL == "('succeeded', 'early_stopped')"
    store = Store(tmp_path)
    assert set(store.counts()) == {s.value for s in TrialStatus}
    store.close()
    with pytest.raises(ValueError, match="early_stopped trial has an accuracy"):
        TrialResult(status="early_stopped")


def test_executors_and_evaluators_are_read_from_one_registry_by_config_cli_and_stages(tmp_path):
    from search_helpers import tiny_config

    from search.config import ConfigError, parse_config
    from search.plugins import EVALUATORS, EXECUTORS, load
    from search.stages.stage1 import proxy_executor, supernet_executor
    from search.trials.executors import LocalExecutor, RayExecutor

    assert load(EXECUTORS, "local") is LocalExecutor and load(EXECUTORS, "ray") is RayExecutor
    assert load(EVALUATORS, "proxy") is proxy_executor and load(EVALUATORS, "supernet") is supernet_executor
    base = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match=r"executor.type: .*unknown 'slurm'; use one of local, ray"):
        parse_config({**base, "executor": {"type": "slurm"}})
    with pytest.raises(ConfigError, match=r"evaluator: .*unknown 'zero-shot'; use one of proxy, supernet"):
        parse_config({**base, "evaluator": "zero-shot"})
    refused = run_cli("search", "--resume", str(tmp_path / "none"), "--executor", "slurm", check=False)
    assert refused.returncode == 2 and "--executor must be one of local, ray" in refused.stderr
