"""Does a latency-aware search beat hand-designed models at equal latency? The whole user workflow, resumable.

    python benchmarks/reproduce.py npz:../shared/data/cifar10 --device x86-ort-1t-quick --out runs/reproduce-cifar10
    python benchmarks/reproduce.py shards:DIR --device PROFILE --scale gpu --jobs 8 --out DIR   # the same on GPUs
    python benchmarks/reproduce.py digits --device x86-ort-1t-quick --scale tiny --out DIR      # minutes: the plumbing

Every step is a product command (``mnas proxy``, ``mnas controllers compare``, ``mnas search``,
``mnas supernet train``, ``mnas train``, ``mnas latency measure``, ``mnas export``) run in one
output directory; each step's answer is kept in ``DIR/steps/STEP.json`` and each training in its
own folder, so a killed run started again skips what is done and trains nothing twice. It prints
the plan (done / left) first and a line per step.

1. ``check``: the data spec loads and the device profile measures (one clear message if not).
2. ``latency``: T = MobileNetV2's measured latency on the profile (the hand-designed network to
   beat); every other baseline at the width multiplier whose measured latency is nearest T.
3. ``proxy``: ``mnas proxy select`` (models spread over latency), ``reference --repeats 2`` with
   the full recipe, escalating its epochs until the two seeds agree (Kendall tau >= 0.7), then
   ``search --grid``: the cheapest proxy whose tau against the reference is >= 0.6.
4. ``controller``: the controller ``mnas controllers compare`` ranks best at the search's budget.
5. ``multi_trial`` and ``one_shot``: two searches with a hard latency constraint at T.
6. ``stage2``: the top 3 of each search trained once with the full recipe on the training
   split, tested on the test split; ``seeds``: the best of them and every baseline with
   ``--seeds`` more seeds each (fresh seeds: the run that picked the best is not counted).
7. ``deploy``: every final model's float latency on the profile (measured together) and its
   int8 TFLite latency on the LiteRT profile.
8. ``results.json``, ``results.png`` (top-1 mean +- std vs measured latency) and a table: per model
   mean, std, n; searched minus each baseline with a 95% interval (Welch) and Welch's p-value.

The latency is the architecture's at ``latency_resolution`` (deployed, width 1.0: the MnasNet
convention), while accuracy comes from the scale's training recipe (CPU: 32 px, width 0.5); a
baseline at width w is the architecture ``widened(w)``, trained with the same recipe as the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE = "mobilenet-v2"  # the space's base network: T is its measured latency
BASELINES = ["mobilenet-v2", "mobilenet-v3-small", "mobilenet-v3-large", "mnasnet-a1"]
WIDTHS = [0.35, 0.5, 0.6, 0.75, 0.85, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0]
AGREE_TAU, PROXY_TAU = 0.7, 0.6
HEARTBEAT_S = 30


@dataclass
class Scale:
    """Everything the run's size depends on; the steps are the same at every scale."""

    recipe: dict  # the full training: resolution, width, stride cuts, batch (mnas.recipe fields)
    epochs: list[int]  # full-recipe epochs tried in turn until the reference agrees with itself
    train_images: int | None  # stage 2 trains on a stratified subset of this many (None: all)
    proxy: dict  # the proxy ``mnas proxy select`` trains with (the grid's starting point)
    grid: list[str]
    candidates: int
    models: int
    trials: int
    supernet_epochs: int
    oneshot_candidates: int
    seeds: int = 3
    eval_images: int | None = None  # one-shot: validation images per candidate (None: the whole split)
    latency_resolution: int = 224
    space: str = "mnasnet"
    compare: list[str] = field(default_factory=lambda: ["evolution", "ppo", "reinforce"])


SCALES = {
    # 2 CPU cores: one training ~3 min (10,000 images x 6 epochs at 32 px, width 0.5); a few CPU-hours in all
    "cpu": Scale(recipe={"resolution": 32, "width_mult": 0.5, "stride_cuts": 1, "batch_size": 128}, epochs=[6, 12],
                 train_images=10000, proxy={"epochs": 1, "data_fraction": 0.1}, grid=["epochs=1,2", "data_fraction=0.1,0.222"],
                 candidates=14, models=10, trials=40, supernet_epochs=6, oneshot_candidates=150, eval_images=1000),
    # one or more GPUs: the shipped proxy's scale (32 px, width 1.0, the ImageNet-style stride cuts of 32 px)
    "gpu": Scale(recipe={"resolution": 32, "width_mult": 1.0, "batch_size": 256}, epochs=[30, 60], train_images=None,
                 proxy={"epochs": 5}, grid=["epochs=2,5,10", "data_fraction=0.25,1.0"], candidates=40, models=12,
                 trials=300, supernet_epochs=120, oneshot_candidates=2000),
    # the plumbing in minutes (tests, a first look at new data): no figure of it means anything
    "tiny": Scale(recipe={"resolution": 8, "width_mult": 0.35, "batch_size": 64}, epochs=[2], train_images=None,
                  proxy={"epochs": 1}, grid=["epochs=1"], candidates=4, models=3, trials=4, supernet_epochs=1,
                  oneshot_candidates=4, seeds=2, latency_resolution=32, compare=["evolution"]),
}


class RunError(Exception):
    """A step cannot go on (bad data spec, a device that cannot measure, a failed command)."""


class Run:
    """The output directory: step answers, timings, and the product commands that fill them."""

    def __init__(self, out: Path, args: argparse.Namespace):
        self.out, self.args, self.scale = out, args, SCALES[args.scale]
        (out / "steps").mkdir(parents=True, exist_ok=True)
        self.times = self._read(out / "times.json") or {}

    @staticmethod
    def _read(path: Path):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def done(self, step: str):
        return self._read(self.out / "steps" / f"{step}.json")

    def step(self, name: str, fn):
        """Run ``fn`` unless its answer is stored; its wall time adds up over resumed runs."""
        answer = self.done(name)
        if answer is not None:
            return answer
        log(f"== {name}")
        t0, before = time.perf_counter(), self.times.get(name, 0.0)
        stop = threading.Event()

        def keep_time():  # a killed run loses at most HEARTBEAT_S of a step's time
            while not stop.wait(HEARTBEAT_S):
                self.times[name] = before + time.perf_counter() - t0
                write(self.out / "times.json", self.times)

        clock = threading.Thread(target=keep_time, daemon=True)
        clock.start()
        try:
            answer = fn()
        finally:
            stop.set()
            clock.join()
            self.times[name] = before + time.perf_counter() - t0
            write(self.out / "times.json", self.times)
        write(self.out / "steps" / f"{name}.json", answer)
        log(f"   {name}: done in {self.times[name]:.0f} s")
        return answer

    def mnas(self, *args: str, json_out: bool = False, env: dict | None = None):
        """Run one product command; its progress lines (stderr) go to the log as they come."""
        exe = Path(sys.executable).with_name("mnas")
        cmd = [str(exe), *map(str, args)] + (["--json"] if json_out else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**os.environ, **(env or {})})
        said: list[str] = []

        def relay():
            for line in proc.stderr:
                said.append(line.rstrip())
                if line.strip() and not line.startswith((" ", "\t")):
                    log(f"   | {line.rstrip()[:160]}")

        relay_thread = threading.Thread(target=relay, daemon=True)
        relay_thread.start()
        out = proc.stdout.read()
        proc.wait()
        relay_thread.join()
        if proc.returncode != 0:
            lines = said or out.strip().splitlines() or ["no output"]
            last = next((ln for ln in reversed(lines) if ln.startswith("error:")), lines[-1])
            raise RunError(f"mnas {' '.join(map(str, args[:3]))} ... failed: {last.removeprefix('error: ')}")
        return json.loads(out) if json_out else out

    def config(self, name: str, **extra) -> Path:
        """A search config of this run (the data, device, space and the scale's recipe)."""
        s = self.scale
        cfg = {"name": name, "seed": 0, "space": s.space,
               "proxy": {"data": self.args.data, **s.recipe, **s.proxy},
               "latency": {"device": self.args.device, "resolution": s.latency_resolution},
               "max_parallel_trials": self.args.jobs, "trial_timeout_s": 7200, "max_trials": 100, **extra}
        if "reward" not in cfg:
            cfg["reward"] = {"target_ms": 1.0}  # the proxy study ranks accuracy; the reward is not used there
        path = self.out / f"{name}.yaml"
        import yaml

        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def write(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, path)


# ----- steps ---------------------------------------------------------------------------------
def check(run: Run) -> dict:
    """The data spec loads and the device measures, before any training starts."""
    info = run.mnas("data", "info", run.args.data, json_out=True)
    probe = run.mnas("latency", "measure", BASE, "--device", run.args.device, "--resolution", 32, "--num-classes", 10, json_out=True)
    return {"num_classes": info["num_classes"], "train_images": info["train"]["images"], "test_images": info["test"]["images"],
            "device": probe["device"]}


def arch_file(run: Run, name: str, arch) -> Path:
    path = run.out / "archs" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    if not path.is_file():
        path.write_text(arch.to_json(indent=1))
    return path


def measure(run: Run, path: Path, classes: int) -> dict:
    m = run.mnas("latency", "measure", path, "--device", run.args.device, "--resolution", run.scale.latency_resolution,
                 "--num-classes", classes, json_out=True)
    return {"latency_ms": m["latency_ms"], "cv": m.get("cv"), "peak_memory_mb": m.get("peak_memory_mb")}


def median_latency(run: Run, path: Path, classes: int) -> float:
    """The median of ``--latency-repeats`` measurements (a busy moment moves one, not the figure)."""
    times = sorted(measure(run, path, classes)["latency_ms"] for _ in range(run.args.latency_repeats))
    return times[len(times) // 2]


def match_latency(run: Run, classes: int) -> dict:
    """T from the base network, then each baseline at the width whose latency is nearest T."""
    from mnas.presets import PRESETS

    target = median_latency(run, arch_file(run, BASE, PRESETS[BASE]), classes)
    log(f"   T = {target:.3f} ms ({BASE} at {run.scale.latency_resolution} px on {run.args.device})")
    chosen = {BASE: {"preset": BASE, "width": 1.0, "latency_ms": target, "tried": {}}}
    for name in run.args.baselines:
        if name == BASE:
            continue
        tried = {}
        for w in WIDTHS:
            tried[w] = median_latency(run, arch_file(run, f"{name}-w{w:g}", PRESETS[name].widened(w)), classes)
            if tried[w] > 1.5 * target:
                break
        width = min(tried, key=lambda w: abs(tried[w] - target))
        chosen[f"{name}-w{width:g}"] = {"preset": name, "width": width, "latency_ms": tried[width], "tried": tried}
        log(f"   {name}: width {width:g} at {tried[width]:.3f} ms")
    return {"target_ms": target, "baselines": chosen}


def design_proxy(run: Run) -> dict:
    """Select models, a reference that agrees with itself, then the cheapest proxy that ranks like it."""
    s, study = run.scale, ["--out", run.out / "proxy"]
    cfg = run.config("proxy-study")
    fraction = min(1.0, s.train_images / (0.9 * run.done("check")["train_images"])) if s.train_images else 1.0
    selected = run.mnas("proxy", "select", cfg, "--candidates", s.candidates, "--models", s.models, *study, json_out=True)
    reference = None
    for epochs in s.epochs:
        reference = run.mnas("proxy", "reference", cfg, "--epochs", epochs, "--data-fraction", f"{fraction:.4f}", "--repeats", 2,
                             *study, json_out=True)
        tau = reference["self_agreement"]["tau"]
        log(f"   reference {epochs} epochs: two seeds agree at tau {tau:.3f}")
        if tau >= AGREE_TAU:
            break
    grid = [g for item in s.grid for g in ("--grid", item)]
    searched = run.mnas("proxy", "search", cfg, *grid, "--min-tau", PROXY_TAU, *study, json_out=True)
    rows = [r for r in searched["rows"] if r["status"] == "complete" and r["tau"] == r["tau"]]
    winner = searched["winner"] or (max(rows, key=lambda r: r["tau"]) if rows else None)
    if winner is None:
        raise RunError("no proxy setting finished; see the proxy study's log")
    return {"selected": selected, "reference": reference, "settings": searched["rows"], "winner": winner,
            "winner_passes": bool(searched["winner"]), "data_fraction": fraction}


def pick_controller(run: Run) -> dict:
    kinds = [a for k in run.scale.compare for a in ("--controller", k)]
    proposals = max(100, run.scale.trials)
    seeds = [a for s in (0, 1, 2) for a in ("--seed", s)]
    result = run.mnas("controllers", "compare", *kinds, "--proposals", proposals, *seeds, json_out=True)
    at = min(k for k in (100, 300, 1000) if k >= min(proposals, 1000))
    best = max((r for r in result["summaries"] if r["best_at"].get(str(at)) is not None), key=lambda r: r["best_at"][str(at)])
    return {"controller": best["kind"], "at": at, "best_at": {r["kind"]: r["best_at"].get(str(at)) for r in result["summaries"]}}


def search(run: Run, name: str, target: float, proxy: dict, **extra) -> dict:
    exp = run.out / name
    cfg = run.config(name, reward={"target_ms": round(target, 4), "mode": "hard"}, **extra)
    import yaml

    doc = yaml.safe_load(cfg.read_text())
    doc["proxy"].update(proxy)
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    if extra.get("evaluator") == "supernet":
        run.mnas("supernet", "train", cfg, "--out", run.out / name / "supernet")
    elif not (run.out / f"estimate-{name}.json").is_file():  # the forecast a user gets before starting, checked afterwards
        forecast = run.mnas("estimate", cfg, "--probe", 2, "--stage2-top", 0, json_out=True)
        write(run.out / f"estimate-{name}.json", forecast)
        log(f"   mnas estimate: {forecast['search_wall_hours'] * 60:.0f} min for {forecast['trials']} trials")
    args = ["--resume", exp] if (exp / "experiment.sqlite").is_file() else [cfg, "--out", exp]
    run.mnas("search", *args, "--no-progress")
    from search.config import load_config
    from search.experiment import queries
    from search.experiment.store import Store

    store = Store(exp)
    try:
        frame = queries.trial_frame(store)
        top = queries.top_distinct(frame, 3, reward=load_config(cfg).reward)
        rows = [store.trial(int(i)) for i in top.id]
        evaluated = int((frame["status"] == "succeeded").sum())
    finally:
        store.close()
    return {"evaluated": evaluated, "top": [{"trial": r["id"], "architecture": r["architecture"], "stage1_top1": r["accuracy"],
                                             "latency_ms": r["latency_ms"], "reward": r["reward"]} for r in rows]}


def train(run: Run, name: str, arch_path: Path, seed: int, epochs: int) -> dict:
    """One full-recipe training (``mnas train``), tested on the test split; kept in its folder."""
    out = run.out / "train" / f"{name}-seed{seed}"
    metrics = Run._read(out / "metrics.json")
    if metrics is None:
        r = run.scale.recipe
        args = ["train", arch_path, "--data", run.args.data, "--epochs", epochs, "--seed", seed, "--out", out,
                "--resolution", r["resolution"], "--width-mult", r["width_mult"], "--batch-size", r["batch_size"]]
        args += ["--stride-cuts", r["stride_cuts"]] if "stride_cuts" in r else []
        args += ["--limit", run.scale.train_images] if run.scale.train_images else []
        run.mnas(*args, env={"OMP_NUM_THREADS": "1"} if run.args.jobs > 1 else None)
        metrics = json.loads((out / "metrics.json").read_text())
        log(f"   trained {name} seed {seed}: test top-1 {metrics['top1']:.4f} ({metrics['train_seconds']:.0f} s)")
    return {"top1": metrics["top1"], "seconds": metrics["train_seconds"]}


def train_all(run: Run, jobs: list[tuple[str, Path, int]], epochs: int) -> dict:
    with ThreadPoolExecutor(run.args.jobs) as pool:
        futures = {(n, s): pool.submit(train, run, n, p, s, epochs) for n, p, s in jobs}
        return {f"{n}|{s}": f.result() for (n, s), f in futures.items()}


def stage2(run: Run, epochs: int) -> dict:
    from mnas.arch import Architecture

    jobs = []
    for search_name in ("multi_trial", "one_shot"):
        for rank, row in enumerate(run.done(search_name)["top"], 1):
            name = f"{search_name}-{rank}"
            jobs.append((name, arch_file(run, name, Architecture.from_dict(row["architecture"])), 0))
    return train_all(run, jobs, epochs)


def final_seeds(run: Run, epochs: int) -> dict:
    """The best searched model under T (by its stage-2 run) and every baseline, ``seeds`` fresh seeds each."""
    target = run.done("latency")["target_ms"]
    firsts = run.done("stage2")
    searched = {}
    for search_name in ("multi_trial", "one_shot"):
        for rank, row in enumerate(run.done(search_name)["top"], 1):
            searched[f"{search_name}-{rank}"] = {"stage2_top1": firsts[f"{search_name}-{rank}|0"]["top1"], "latency_ms": row["latency_ms"]}
    under = {n: v for n, v in searched.items() if v["latency_ms"] <= target} or searched
    best = max(under, key=lambda n: under[n]["stage2_top1"])
    names = [best, *run.done("latency")["baselines"]]
    seeds = range(1, run.scale.seeds + 1)
    runs = train_all(run, [(n, run.out / "archs" / f"{n}.json", s) for n in names for s in seeds], epochs)
    return {"best": best, "searched": searched, "models": names, "runs": runs}


def deploy(run: Run, classes: int) -> dict:
    """Float latency of every final model, measured together, and its int8 TFLite latency."""
    names = run.done("seeds")["models"]
    paths = {name: run.out / "archs" / f"{name}.json" for name in names}
    floats: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(run.args.latency_repeats):  # round robin: a drift of the machine's speed touches every model alike
        for name in names:
            floats[name].append(measure(run, paths[name], classes))
    out = {}
    for name in names:
        path = paths[name]
        row = {"float": floats[name]}
        row["latency_ms"] = sorted(m["latency_ms"] for m in row["float"])[len(row["float"]) // 2]
        if run.args.int8_device:
            tfl = run.out / "int8" / f"{name}.tflite"
            tfl.parent.mkdir(exist_ok=True)
            try:  # a model that does not convert is recorded with the converter's reason, not dropped
                if not tfl.is_file():
                    run.mnas("export", path, "--format", "tflite", "--quantize", "int8", "--calibration", run.args.data,
                             "--resolution", run.scale.latency_resolution, "--num-classes", classes, "--out", tfl)
                row["int8_latency_ms"] = run.mnas("latency", "measure", tfl, "--device", run.args.int8_device, json_out=True)["latency_ms"]
            except RunError as exc:
                row["int8_error"] = str(exc)[:400]
        out[name] = row
        log(f"   {name}: {row['latency_ms']:.3f} ms float" + (f", {row['int8_latency_ms']:.3f} ms int8" if "int8_latency_ms" in row else ""))
    return out


# ----- statistics and the report -------------------------------------------------------------
def welch(a: list[float], b: list[float]) -> dict:
    """Mean difference a - b, its 95% interval (Welch-Satterthwaite) and Welch's two-sided p-value."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = float(a.mean() - b.mean()), math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "ci95": [diff, diff], "p": 0.0 if diff else 1.0, "df": float("nan")}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return {"diff": diff, "ci95": [diff - half, diff + half], "p": p, "df": float(df)}


def summarize(run: Run) -> dict:
    import numpy as np

    seeds, lat, base = run.done("seeds"), run.done("deploy"), run.done("latency")
    models = {}
    for name in seeds["models"]:
        top1 = [v["top1"] for k, v in seeds["runs"].items() if k.split("|")[0] == name]
        models[name] = {"kind": "searched" if name == seeds["best"] else "hand-designed", "top1": top1, "n": len(top1),
                        "mean": float(np.mean(top1)), "std": float(np.std(top1, ddof=1)) if len(top1) > 1 else float("nan"),
                        "latency_ms": lat[name]["latency_ms"], "int8_latency_ms": lat[name].get("int8_latency_ms"),
                        "width": base["baselines"].get(name, {}).get("width")}
    best = seeds["best"]
    hand = {n: m for n, m in models.items() if n != best}
    comparisons = {n: {**welch(models[best]["top1"], m["top1"]), "faster_or_equal": models[best]["latency_ms"] <= m["latency_ms"]}
                   for n, m in hand.items()}
    top_hand = max(hand, key=lambda n: hand[n]["mean"])
    c = comparisons[top_hand]
    goal = {"baseline": top_hand, "diff_points": 100 * c["diff"], "p": c["p"], "at_or_under_latency": c["faster_or_equal"],
            "met": c["faster_or_equal"] and c["diff"] >= 0.01 and c["p"] < 0.05}
    return {"machine": machine_line(), "scale": run.args.scale, "data": run.args.data, "device": run.args.device,
            "target_ms": base["target_ms"], "best": best, "models": models, "comparisons": comparisons, "goal": goal,
            "proxy": {k: run.done("proxy")[k] for k in ("winner", "winner_passes", "data_fraction")},
            "reference_self_agreement": run.done("proxy")["reference"]["self_agreement"],
            "controller": run.done("controller"), "times_s": run.times, "total_s": sum(run.times.values()),
            "estimate": estimate_check(run)}


def estimate_check(run: Run) -> dict | None:
    """``mnas estimate``'s forecast of the multi-trial search against its measured wall time."""
    forecast = Run._read(run.out / "estimate-multi_trial.json")
    if forecast is None or "multi_trial" not in run.times:
        return None
    return {"forecast_s": forecast["search_wall_hours"] * 3600, "measured_s": run.times["multi_trial"],
            "ratio": run.times["multi_trial"] / (forecast["search_wall_hours"] * 3600)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, m in result["models"].items():
        searched = m["kind"] == "searched"
        ax.errorbar(m["latency_ms"], 100 * m["mean"], yerr=100 * (m["std"] if m["std"] == m["std"] else 0), fmt="*" if searched else "o",
                    ms=12 if searched else 7, capsize=4, color="tab:red" if searched else "tab:blue")
        ax.annotate(name, (m["latency_ms"], 100 * m["mean"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.axvline(result["target_ms"], ls="--", color="grey", lw=1)
    ax.set_xlabel(f"latency on {result['device']} (ms, measured)")
    ax.set_ylabel("test top-1 (%), mean +- std over seeds")
    ax.set_title("searched (red) vs hand-designed (blue) at matched latency", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(result: dict) -> str:
    lines = [result["machine"], f"T = {result['target_ms']:.3f} ms on {result['device']}",
             "| model | kind | width | latency ms | int8 ms | n | top-1 mean | std | searched minus this (pt) | 95% CI | p (Welch) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in sorted(result["models"].items(), key=lambda kv: kv[1]["latency_ms"]):
        c = result["comparisons"].get(name)
        cmp = f"{100 * c['diff']:+.2f} | [{100 * c['ci95'][0]:+.2f}, {100 * c['ci95'][1]:+.2f}] | {c['p']:.3g}" if c else "- | - | -"
        int8 = f"{m['int8_latency_ms']:.3f}" if m.get("int8_latency_ms") else "-"
        width = f"{m['width']:g}" if m.get("width") else "-"
        lines.append(f"| {name} | {m['kind']} | {width} | {m['latency_ms']:.3f} | {int8} | {m['n']} | {100 * m['mean']:.2f} | "
                     f"{100 * m['std']:.2f} | {cmp} |")
    g = result["goal"]
    lines.append(f"goal (>= +1.0 pt over the best hand-designed, at <= its latency, p < 0.05): {'MET' if g['met'] else 'not met'} "
                 f"({g['diff_points']:+.2f} pt vs {g['baseline']}, p = {g['p']:.3g}, latency {'<=' if g['at_or_under_latency'] else '>'})")
    if e := result.get("estimate"):
        lines.append(f"mnas estimate forecast the multi-trial search at {e['forecast_s']:.0f} s; it took {e['measured_s']:.0f} s "
                     f"({e['ratio']:.2f}x)")
    lines.append("wall time per step (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result["times_s"].items())
                 + f"; in all {result['total_s']:.0f} s")
    return "\n".join(lines)


STEPS = ["check", "latency", "proxy", "controller", "multi_trial", "one_shot", "stage2", "seeds", "deploy"]


def plan(run: Run) -> None:
    marks = [f"{s} {'done' if run.done(s) is not None else 'left'}" for s in STEPS]
    trained = len(list((run.out / "train").glob("*/metrics.json"))) if (run.out / "train").is_dir() else 0
    log(f"{run.out}: " + ", ".join(marks) + f"; {trained} final trainings kept; {sum(run.times.values()):.0f} s spent so far")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="data spec: npz:DIR, imagefolder:DIR, shards:DIR, digits")
    ap.add_argument("--device", required=True, help="device profile (shipped name or YAML) the latency is measured on")
    ap.add_argument("--int8-device", default="x86-litert-1t", help="LiteRT profile for the int8 TFLite latency ('' to skip)")
    ap.add_argument("--out", type=Path, required=True, help="run directory (run again to continue after a kill)")
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    ap.add_argument("--baselines", nargs="+", default=BASELINES)
    ap.add_argument("--latency-repeats", type=int, default=3, help="measurements of each final model (the median is kept)")
    args = ap.parse_args()
    out = args.out.resolve()
    run = Run(out, args)
    plan(run)
    try:
        facts = run.step("check", lambda: check(run))
        classes = facts["num_classes"]
        target = run.step("latency", lambda: match_latency(run, classes))["target_ms"]
        proxy = run.step("proxy", lambda: design_proxy(run))
        epochs = proxy["reference"]["epochs"]
        controller = run.step("controller", lambda: pick_controller(run))["controller"]
        setting = {**proxy["winner"]["setting"]}
        run.step("multi_trial", lambda: search(run, "multi_trial", target, setting, max_trials=run.scale.trials,
                                               controller={"type": controller}))
        full = {"epochs": epochs, "data_fraction": proxy["data_fraction"]}
        run.step("one_shot", lambda: search(run, "one_shot", target, full, max_trials=run.scale.oneshot_candidates, evaluator="supernet",
                                            controller={"type": "evolution", "population": 50, "tournament": 10},
                                            supernet={"epochs": run.scale.supernet_epochs, "eval_images": run.scale.eval_images}))
        run.step("stage2", lambda: stage2(run, epochs))
        run.step("seeds", lambda: final_seeds(run, epochs))
        run.step("deploy", lambda: deploy(run, classes))
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    result = summarize(run)
    write(out / "results.json", result)
    plot(result, out / "results.png")
    print(table(result))


if __name__ == "__main__":
    main()
