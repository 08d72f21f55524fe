"""benchmarks/reproduce.py: its statistics, its refusals of bad input, and (slow) the whole run resumed."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from scipy import stats

SCRIPT = REPO / "benchmarks" / "reproduce.py"
sys.path.insert(0, str(REPO / "benchmarks"))


def reproduce(*args, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_welch_gives_the_difference_its_interval_and_scipys_p_value():
    from reproduce import welch

    a, b = [0.612, 0.618, 0.605], [0.590, 0.601, 0.588, 0.596]
    w = welch(a, b)
    assert w["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert w["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    # the interval is the one scipy's Welch test reports (scipy >= 1.11)
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert w["ci95"] == pytest.approx([low, high])
    assert w["ci95"][0] > 0 and w["p"] < 0.05  # these samples are apart beyond their noise
    same = welch([0.60, 0.62, 0.61], [0.61, 0.60, 0.62])
    assert same["ci95"][0] < 0 < same["ci95"][1] and same["p"] > 0.5


@pytest.mark.parametrize("data,device,says", [
    ("npz:/nonexistent/cifar", "x86-ort-1t-quick", "/nonexistent/cifar"),
    ("digits", "no-such-profile", "no-such-profile"),
])
def test_bad_data_or_device_stops_the_run_at_start_with_one_message(tmp_path, data, device, says):
    proc = reproduce(data, "--device", device, "--out", tmp_path / "run", "--scale", "tiny")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and says in last
    assert not (tmp_path / "run" / "steps" / "check.json").exists()  # nothing recorded as done


@pytest.mark.slow  # ~3 min of tiny trainings on digits
def test_the_tiny_run_end_to_end_then_resumed_trains_nothing_again(tmp_path):
    out = tmp_path / "run"
    args = ["digits", "--device", "x86-ort-1t-quick", "--out", out, "--scale", "tiny", "--int8-device", "",
            "--baselines", "mobilenet-v2", "mnasnet-a1", "--latency-repeats", "1"]
    first = reproduce(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    names = sorted(result["models"])
    assert len(names) == 3 and result["best"] in names and "mobilenet-v2" in names and any(n.startswith("mnasnet-a1-w") for n in names)
    assert all(m["n"] == 2 for m in result["models"].values())  # the tiny scale's 2 fresh seeds
    assert result["models"]["mobilenet-v2"]["width"] == 1.0 and result["target_ms"] > 0
    assert set(result["times_s"]) >= {"check", "latency", "proxy", "controller", "multi_trial", "one_shot", "stage2", "seeds", "deploy"}
    assert (out / "results.png").stat().st_size > 5000
    trained = sorted(p.parent.name for p in (out / "train").glob("*/metrics.json"))
    assert len(trained) == 6 + 3 * 2  # stage 2: top 3 of two searches; then 3 models x 2 seeds
    again = reproduce(*args)
    assert again.returncode == 0 and "trained" not in again.stderr and "== " not in again.stderr
    assert sorted(p.parent.name for p in (out / "train").glob("*/metrics.json")) == trained
    assert json.loads((out / "results.json").read_text())["models"] == result["models"]
