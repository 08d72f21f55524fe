"""Presets and shipped spaces: counts against timm's models, latency at 224 px on the shipped
1-thread profiles (onnxruntime and LiteRT), and the size of every shipped search space.

    python benchmarks/presets.py [--repeats 3] [--resolution 224]

Latency = median of ``--repeats`` measurements, each the profile's own protocol (x86-ort-1t
and x86-litert-1t: 1 thread pinned to CPU 0, 20 warm-up + 50 timed runs in 3 fresh processes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _machine import machine_line  # noqa: E402
from test_presets import TIMM_COUNTS  # noqa: E402  (timm's counts, measured once, kept as numbers)

from devices.measure import measure_file  # noqa: E402
from devices.profile import load_profile  # noqa: E402
from mnas.costs import arch_info  # noqa: E402
from mnas.export import export_architecture  # noqa: E402
from mnas.presets import PRESETS  # noqa: E402
from mnas.space import load_space, shipped_spaces  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()
    print(machine_line())
    print("\n| space | blocks (searched) | tokens | size (log10) |\n|---|---|---|---|")
    for name in shipped_spaces():
        info = load_space(name).info()
        print(f"| `{name}` | {info['num_blocks']} ({info['searched_blocks']}) | {info['num_tokens']} | {info['size_log10']:.2f} |")
    profiles = {"onnx": load_profile("x86-ort-1t"), "tflite": load_profile("x86-litert-1t")}
    print(f"\n| preset | params | timm params | MACs (M) | timm MACs (M) | ORT ms ({args.resolution} px) | LiteRT ms | ORT peak MB | LiteRT peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch in PRESETS.items():
            info = arch_info(arch)
            _, params, macs = TIMM_COUNTS[name]
            cells = []
            for fmt, profile in profiles.items():
                path = export_architecture(arch, Path(tmp) / f"{name}.{fmt}", fmt, args.resolution)
                runs = [measure_file(profile, path) for _ in range(args.repeats)]
                cells.append((statistics.median(r["latency_ms"] for r in runs), statistics.median(r["peak_memory_mb"] for r in runs)))
            print(f"| `{name}` | {info['params']:,} | {params:,} | {info['macs'] / 1e6:.1f} | {macs / 1e6:.1f} | {cells[0][0]:.2f} | "
                  f"{cells[1][0]:.2f} | {cells[0][1]:.1f} | {cells[1][1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
