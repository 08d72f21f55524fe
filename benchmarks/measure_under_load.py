"""Latency measured while a CPU search trains on the same cores: idle, loaded, and loaded with
the search's fix (``search.latency.quiet``: the measurement pauses the trials' training).

    python benchmarks/measure_under_load.py [--repeats 5]

Measures MnasNet-A1 at 224 px on ``x86-ort-1t`` and a demo-size model (a sampled architecture
at 64 px on ``x86-ort-1t-quick``): first on the idle machine, then while ``make demo``'s
search runs (2 trials training at once), alternating a plain measurement ("loaded") with one
taken inside the search's measurement lock, as its own trials take theirs ("loaded, paused").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_line  # noqa: E402

from latency_service.client import make_measurer  # noqa: E402
from mnas.export import export_architecture  # noqa: E402
from mnas.presets import PRESETS  # noqa: E402
from mnas.space import SearchSpace  # noqa: E402
from search.latency.quiet import measuring_alone  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def measure(device: str, path: Path) -> dict:
    m = make_measurer(device=device)
    try:
        return m.measure(path)
    finally:
        m.close()


def summary(results: list[dict]) -> str:
    lat = [r["latency_ms"] for r in results]
    cvs = [r["cv"] for r in results]
    stable = sum(r["stable"] for r in results)
    return f"{statistics.median(lat):.3f} | {min(lat):.3f}-{max(lat):.3f} | {statistics.median(cvs):.1%} | {stable}/{len(results)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mnas-load-"))
    models = {
        "MnasNet-A1, 224 px, x86-ort-1t": ("x86-ort-1t", export_architecture(PRESETS["mnasnet-a1"], tmp / "a1.onnx", "onnx", 224, 1000)),
        "demo-size model, 64 px, x86-ort-1t-quick": ("x86-ort-1t-quick", export_architecture(SearchSpace().sample(3), tmp / "demo.onnx", "onnx", 64, 10)),
    }
    rows = {name: {"idle": [], "loaded": [], "loaded, paused": []} for name in models}
    for name, (device, path) in models.items():
        rows[name]["idle"] = [measure(device, path) for _ in range(args.repeats)]
    exp = tmp / "demo-exp"
    search = subprocess.Popen([sys.executable, "-m", "search.cli", "search", str(REPO / "search/configs/demo.yaml"), "--out", str(exp),
                               "--no-progress"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list((exp / "trials").glob("*/log.txt")) and time.time() < deadline:  # trials started
            time.sleep(0.5)
        time.sleep(8)  # into their training
        for _ in range(args.repeats):
            for name, (device, path) in models.items():
                rows[name]["loaded"].append(measure(device, path))
                with measuring_alone(exp):
                    rows[name]["loaded, paused"].append(measure(device, path))
        still_running = search.poll() is None
    finally:
        search.terminate()
        search.wait(30)
    print(f"# {machine_line()}")
    print(f"# {args.repeats} measurements per cell; loaded = while make demo's search trains 2 trials at once"
          f"{'' if still_running else ' (WARNING: the search ended before the last measurement)'}")
    print("\n| model | condition | median ms | range | median CV | stable |\n|---|---|---|---|---|---|")
    for name, cells in rows.items():
        idle = statistics.median(r["latency_ms"] for r in cells["idle"])
        for cond, results in cells.items():
            bias = statistics.median(r["latency_ms"] for r in results) / idle - 1
            print(f"| {name} | {cond} ({bias:+.1%} vs idle) | {summary(results)} |")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
