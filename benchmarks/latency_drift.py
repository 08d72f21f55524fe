"""Do measurements taken minutes apart agree? Plain profile vs the same with a reference.

    python benchmarks/latency_drift.py --resolution 64 --models 6 --rounds 6

Samples ``--models`` architectures from the space, then ``--rounds`` times measures each of
them on every profile in ``--profiles`` (interleaved, so all profiles see the same machine
at nearly the same moment). For each profile: the share of later measurements within
+-10% of a model's first, the worst spread (max/min - 1) of one model's figures, and, for
a profile with a reference, the range of machine speed its reference saw.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_line  # noqa: E402

from devices.measure import measure_file  # noqa: E402
from devices.profile import load_profile  # noqa: E402
from mnas.export import export_architecture  # noqa: E402
from mnas.space import SearchSpace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--profiles", nargs="+", default=["x86-ort-1t", "x86-ort-1t-steady"])
    args = parser.parse_args()
    profiles = [load_profile(p) for p in args.profiles]
    space = SearchSpace()
    figures = {p.name: np.zeros((args.models, args.rounds)) for p in profiles}
    speeds = {p.name: [] for p in profiles}
    with tempfile.TemporaryDirectory() as tmp:
        paths = [export_architecture(space.sample(20_000 + i), Path(tmp) / f"m{i}.onnx", "onnx", args.resolution, 1000)
                 for i in range(args.models)]
        for r in range(args.rounds):
            for i, path in enumerate(paths):
                for p in profiles:
                    result = measure_file(p, path)
                    figures[p.name][i, r] = result["latency_ms"]
                    if "reference" in result:
                        speeds[p.name].append(result["reference"]["speed"])
            print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    print(f"# {machine_line()}")
    print(f"# {args.models} models sampled at {args.resolution} px, each measured {args.rounds} times per profile, interleaved")
    print("\n| profile | later measurements within +-10% of the first | median spread per model | worst spread | machine speed seen |")
    print("|---|---|---|---|---|")
    for p in profiles:
        v = figures[p.name]
        within = np.abs(v[:, 1:] / v[:, :1] - 1) <= 0.10
        spread = v.max(axis=1) / v.min(axis=1) - 1
        speed = f"{min(speeds[p.name]):.2f}-{max(speeds[p.name]):.2f}x calibrated" if speeds[p.name] else "-"
        print(f"| {p.name} | {within.mean():.0%} | {np.median(spread):.1%} | {spread.max():.1%} | {speed} |")
    print(f"\nmeasured latency: {min(v.min() for v in figures.values()):.3f}-{max(v.max() for v in figures.values()):.3f} ms")


if __name__ == "__main__":
    main()
