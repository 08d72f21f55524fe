"""The proxy-task design tools: rank statistics against hand-made cases, the whole chain end to end
on digits at a tiny scale (real trainings through the executors), resume after a kill, and the
final checks refusing an impossible proxy."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run_cli
from scipy.stats import kendalltau
from search_helpers import tiny_config, write_config

from search.config import parse_config
from search.experiment.preflight import largest_architecture
from search.experiment.store import Store
from search.proxy.ranks import agreement, best_reachable_tau
from search.proxy.select import spread_out


def proxy_config(tmp: Path, name: str = "proxy.yaml", **overrides) -> Path:
    proxy = {"epochs": 1, "batch_size": 32, "resolution": 8, "width_mult": 0.5, **overrides.pop("proxy", {})}
    return write_config(tmp / name, tiny_config(tmp, space="tiny", proxy=proxy, **overrides))


def test_tau_spearman_and_the_reachable_bound_on_hand_made_rankings():
    # proxy swaps the last two of four: 5 concordant pairs, 1 discordant -> tau (5 - 1) / 6; rho 1 - 6 * 2 / (4 * 15)
    a = agreement([1, 2, 4, 3], [10, 20, 30, 40])
    assert a.tau == pytest.approx(4 / 6) and a.spearman == pytest.approx(0.8) and a.n == 4
    assert np.isnan(agreement([1, 1, 1], [1, 2, 3]).tau)  # a constant proxy ranks nothing
    ref = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    assert best_reachable_tau({}, ref) == 1.0
    assert best_reachable_tau({"a": 0.2, "b": 0.1}, ref) == pytest.approx(4 / 6)  # one pair known wrong, five open
    assert best_reachable_tau({"a": 4, "b": 3, "c": 2, "d": 1}, ref) == pytest.approx(-1.0)
    # the bound is never below what any completion of a partial result reaches (tau-b, ties included)
    rng = np.random.default_rng(0)
    for _ in range(40):
        ref = {k: float(v) for k, v in zip("abcde", rng.integers(0, 4, 5))}
        if len(set(ref.values())) < 2:
            continue
        known = {k: float(rng.integers(0, 3)) for k in rng.choice(list(ref), size=int(rng.integers(0, 5)), replace=False)}
        bound = best_reachable_tau(known, ref)
        rest = [k for k in ref if k not in known]
        for values in itertools.product(range(4), repeat=len(rest)):
            full = {**known, **dict(zip(rest, map(float, values)))}
            tau = kendalltau([full[k] for k in ref], list(ref.values())).statistic
            assert np.isnan(tau) or tau <= bound + 1e-9, (known, ref, full, tau, bound)


def test_spread_out_drops_near_duplicates_and_keeps_the_range():
    acc = np.array([0.10, 0.11, 0.50, 0.90, 0.505])
    lat = np.array([1.0, 1.01, 2.0, 4.0, 2.01])
    kept = spread_out(acc, lat, 3)
    assert len(kept) == 3 and 3 in kept  # the far corner stays
    assert len({0, 1} & set(kept)) == 1 and len({2, 4} & set(kept)) == 1  # one of each near-duplicate pair


def test_largest_architecture_has_the_most_multiply_adds():
    from mnas.layers import arch_layers
    from mnas.space import load_space

    for name in ("tiny", "mnasnet"):
        space = load_space(name)
        macs = lambda a: sum(layer.costs()["macs"] for _, layer in arch_layers(a, 32))  # noqa: E731
        largest = macs(largest_architecture(space, 32))
        rng = np.random.default_rng(1)
        assert all(macs(space.sample(rng)) <= largest for _ in range(300))


def test_choice_effects_count_and_average_each_choice():
    from mnas.space import load_space
    from search.results.analysis import choice_effects

    space = load_space("tiny")
    n = len(space.tokens)
    base = [0] * n
    other = [0] * n
    other[0] = 1
    df = pd.DataFrame({"stage": 1, "status": "succeeded", "cached": False, "reward": [0.2, 0.4, 0.9], "accuracy": [0.3, 0.5, 0.8],
                       "indices": [base, base, other]})
    table = choice_effects(df, space)
    first = table[(table.block == space.tokens[0].block + 1) & (table.token == space.tokens[0].name)].set_index("choice")
    c0, c1 = (str(c) for c in space.tokens[0].choices[:2])
    assert first.loc[c0, "trials"] == 2 and first.loc[c0, "mean_reward"] == pytest.approx(0.3)
    assert first.loc[c1, "trials"] == 1 and first.loc[c1, "mean_accuracy"] == pytest.approx(0.8)
    assert table.iloc[0].token == space.tokens[0].name  # the only token whose choices differ comes first


def mnas(*args: str, code: int = 0):
    """The mnas command in this process (the trainings still run as the executor's subprocesses):
    a CLI start costs seconds, and this chain makes a dozen of them."""
    from typer.testing import CliRunner

    from search.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def mnas_json(*args: str):
    return json.loads(mnas(*args, "--json").stdout)


def _study_rows(out: Path) -> list[dict]:
    store = Store(out)
    try:
        return store.trials(stage=3)
    finally:
        store.close()


def test_the_proxy_tool_chain_end_to_end(tmp_path):
    config = proxy_config(tmp_path)
    out = tmp_path / "study"
    common = ["--out", str(out)]
    selected = mnas_json("proxy", "select", config, "--candidates", "5", "--models", "3", *common)
    assert [m["name"] for m in selected] == ["m0", "m1", "m2"]
    assert [m["latency_ms"] for m in selected] == sorted(m["latency_ms"] for m in selected) and all(m["latency_ms"] > 0 for m in selected)
    assert len(_study_rows(out)) == 5  # every candidate trained once with the config's proxy

    ref = mnas_json("proxy", "reference", config, "--epochs", "2", *common)
    assert set(ref["accuracy"]) == {"m0", "m1", "m2"} and ref["epochs"] == 2 and len(ref["settle"]) == 2
    store = Store(out)
    curves = store.curves(stage=3)
    refs = [t for t in store.trials(stage=3) if t["meta"]["step"] == "reference"]
    store.close()
    assert all([p["epoch"] for p in curves[t["id"]]] == [1, 2] for t in refs)  # a learning curve per reference model
    assert all(set(t["metrics"]["zero_cost"]) >= {"params", "macs", "synflow", "zico"} for t in refs)

    searched = mnas_json("proxy", "search", config, "--grid", "resolution=8,16", "--min-tau", "-1", *common)
    rows = {r["label"]: r for r in searched["rows"]}
    assert set(rows) == {"resolution=8", "resolution=16"} and all(r["status"] == "complete" for r in rows.values())
    settings = [t for t in _study_rows(out) if t["meta"]["step"] == "setting"]
    # resolution=8 is the config's own proxy: exactly what select trained, so it is shared, not trained again
    assert len(settings) == 3 and all(t["meta"]["setting"] == {"resolution": 16} for t in settings)
    proxy_acc = {16: {t["meta"]["name"]: t["accuracy"] for t in settings}, 8: {m["name"]: m["proxy_accuracy"] for m in selected}}
    names = sorted(ref["accuracy"])
    for res, row in ((8, rows["resolution=8"]), (16, rows["resolution=16"])):
        expected = kendalltau([proxy_acc[res][n] for n in names], [ref["accuracy"][n] for n in names]).statistic
        assert row["tau"] == pytest.approx(expected, nan_ok=True) and row["seconds_per_trial"] > 0
    winner = searched["winner"]
    assert winner["passes"] and winner["seconds_per_trial"] == min(r["seconds_per_trial"] for r in rows.values())
    block = yaml.safe_load(Path(searched["winner_file"]).read_text())
    pasted = parse_config({**yaml.safe_load(config.read_text()), **block})  # ready to paste: a valid search config
    assert pasted.proxy.resolution == winner["setting"]["resolution"] and pasted.proxy.data == "digits"
    assert {z["score"] for z in searched["zero_cost"]} >= {"params", "synflow", "zico"}
    assert (out / "proxy" / "tau_vs_cost.png").stat().st_size > 5000

    variance = mnas_json("proxy", "variance", config, "--repeats", "2", *common)
    assert variance["repeats"] == 2 and variance["std"] >= 0 and variance["setting"] == winner["setting"]
    assert variance["model_gap"] is not None and "median gap" in variance["rule"]
    assert variance["noisy"] == (2 * variance["std"] >= variance["model_gap"])

    base = mnas_json("proxy", "baseline", config, "--epochs", "2", "--tune", "--tune-trials", "2", "--batch-sizes", "32,64", *common)
    tuned = base["tuned"]
    assert tuned["batch"]["batch_size"] in (32, 64) and len(tuned["trials"]) == 3
    assert [r["batch_size"] for r in tuned["batch"]["rows"]][:1] == [32]
    assert tuned["best"]["top1"] == max(t["top1"] for t in tuned["trials"] if t["top1"] is not None)
    written = yaml.safe_load((out / "proxy" / "tuned-config.yaml").read_text())
    assert written["proxy"]["batch_size"] == tuned["recipe"]["batch_size"]
    assert [p["epoch"] for p in base["baseline"]["curve"]] == [1, 2] and base["baseline"]["images_per_s"] > 0
    assert base["baseline"]["plateau_epoch"] in (1, 2)

    before = len(_study_rows(out))
    repeated = mnas_json("proxy", "reference", config, "--repeats", "2", *common)  # the 3 models again, seed + 1; the first 3 kept
    assert len(_study_rows(out)) == before + 3 and repeated["repeats"] == 2 and repeated["runs"][0] == ref["accuracy"]
    second = repeated["runs"][1]
    assert repeated["accuracy"] == {n: pytest.approx((ref["accuracy"][n] + second[n]) / 2) for n in names}
    expected = kendalltau([ref["accuracy"][n] for n in names], [second[n] for n in names]).statistic
    assert repeated["self_agreement"]["tau"] == pytest.approx(expected, nan_ok=True)

    before = len(_study_rows(out))
    again = mnas("proxy", "reference", config, "--out", out)  # everything is stored: nothing trains again
    assert len(_study_rows(out)) == before and "] reference" not in again.stdout + again.stderr

    other = write_config(tmp_path / "other.yaml", {**yaml.safe_load(config.read_text()), "space": "mnasnet"})
    refused = run_cli("proxy", "reference", str(other), "--out", str(out), check=False)  # as a user sees it: one line, no traceback
    assert refused.returncode == 2 and "proxy study of another config (its space differ" in refused.stderr and "Traceback" not in refused.stderr
    missing = mnas("proxy", "reference", config, "--out", tmp_path / "fresh", code=2)
    assert "run mnas proxy select first" in missing.stderr


@pytest.mark.slow  # ~60 s of trainings; the tool chain's end-to-end test stays in the default run
def test_a_killed_study_resumes_without_training_anything_twice(tmp_path):
    config = proxy_config(tmp_path, proxy={"epochs": 2})
    out = tmp_path / "study"
    exe = Path(sys.executable).with_name("mnas")
    args = [str(exe), "proxy", "select", str(config), "--candidates", "6", "--models", "3", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [t for t in _study_rows(out) if t["status"] == "succeeded"] if (out / "experiment.sqlite").exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {t["id"]: t["ended"] for t in _study_rows(out) if t["status"] == "succeeded"}
    assert 2 <= len(first) < 6
    run_cli("proxy", "select", str(config), "--candidates", "6", "--models", "3", "--out", str(out))
    rows = _study_rows(out)
    assert len(rows) == 6 and all(t["status"] == "succeeded" for t in rows)
    assert len({t["meta"]["key"] for t in rows}) == 6
    assert all(t["ended"] == first[t["id"]] for t in rows if t["id"] in first)  # kept, not trained again


def test_check_warns_on_small_data_and_refuses_an_impossible_proxy(tmp_path):
    ok = mnas_json("proxy", "check", proxy_config(tmp_path))
    assert ok["problems"] == [] and any("small dataset" in w for w in ok["warnings"])
    assert ok["facts"]["largest_trial_s"] > 0 and ok["facts"]["largest"]["step_s"] > 0
    slow = proxy_config(tmp_path, "slow.yaml", trial_timeout_s=1)
    r = run_cli("proxy", "check", str(slow), check=False)
    assert r.returncode == 2 and "over trial_timeout_s 1" in r.stderr and "Traceback" not in r.stderr, r.stderr
    unreachable = proxy_config(tmp_path, "unreachable.yaml", latency={"device": None, "url": "http://127.0.0.1:9"})
    assert "latency source unusable" in mnas("proxy", "check", unreachable, "--no-probe", code=2).stderr
    bad = mnas("proxy", "search", proxy_config(tmp_path), "--grid", "epoch=1,2", "--out", tmp_path / "s", code=2)
    assert "unknown proxy field(s) epoch" in bad.stderr


@pytest.mark.slow  # ~60 s of trainings; the tool chain's end-to-end test stays in the default run
def test_prefilter_skips_candidates_whose_score_is_below_the_running_quantile(tmp_path):
    cfg = proxy_config(tmp_path, proxy={"prefilter": {"score": "params", "quantile": 0.9, "min_trials": 2}}, max_trials=6,
                       max_parallel_trials=1, controller={"type": "random"})
    out = tmp_path / "exp"
    proc = run_cli("search", str(cfg), "--out", str(out), "--no-progress")
    store = Store(out)
    trials = store.trials()
    told = {trial_id for _, kind, trial_id in store.events_after(0) if kind == "tell"}
    store.close()
    trained, skipped = [], 0
    for t in trials:  # one slot: each trial's bar is the 0.9 quantile over the trials trained before it
        params = t["metrics"]["zero_cost"]["params"]
        bar = float(np.quantile(trained, 0.9)) if len(trained) >= 2 else None
        if t["status"] == "prefiltered":
            skipped += 1
            assert bar is not None and params < bar and t["metrics"]["prefilter"]["below"] == pytest.approx(bar)
            assert t["accuracy"] is None and t["reward"] is None and t["id"] not in told  # not trained, not told
        else:
            assert t["status"] == "succeeded" and (bar is None or params >= bar) and t["id"] in told
            if t["cached_from"] is None:
                trained.append(params)
    assert skipped >= 1 and f"{skipped} prefiltered" in proc.stdout


def test_self_agreement_is_the_mean_tau_of_every_two_repeats_and_the_pooled_seed_spread():
    from search.proxy.settings import self_agreement

    runs = [{"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}, {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.4}, {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}]
    agree = self_agreement(runs)
    # pairs: (0,1) one discordant pair of six -> 4/6; (0,2) reversed -> -1; (1,2) -4/6
    assert [p["repeats"] for p in agree["pairs"]] == [[0, 1], [0, 2], [1, 2]]
    assert [p["tau"] for p in agree["pairs"]] == pytest.approx([4 / 6, -1.0, -4 / 6])
    assert agree["tau"] == pytest.approx((4 / 6 - 1 - 4 / 6) / 3)
    stds = [np.std([r[n] for r in runs], ddof=1) for n in "abcd"]
    assert agree["accuracy_std"] == pytest.approx(np.sqrt(np.mean(np.square(stds))))
    assert self_agreement(runs[:1]) is None
