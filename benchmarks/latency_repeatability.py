"""Repeatability of one latency figure: MnasNet-A1 at 224 px, x86-ort-1t, 10 measurements.

    python benchmarks/latency_repeatability.py

Prints the median, the CV over the 10 measurements and each value, for the shipped
profile pinned to CPU 0, the same pinned to CPU 1, and a longer protocol.
"""

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

from devices.measure import measure_file  # noqa: E402
from devices.profile import load_profile  # noqa: E402
from mnas.export import export_architecture  # noqa: E402
from mnas.presets import PRESETS  # noqa: E402

print(f"# {machine_line()}")
print("| protocol | median ms | CV over 10 | values |")
print("|---|---|---|---|")
with tempfile.TemporaryDirectory() as tmp:
    p = export_architecture(PRESETS["mnasnet-a1"], Path(tmp) / "a1.onnx", "onnx", 224)
    base = load_profile("x86-ort-1t")
    for name, upd in [("x86-ort-1t (CPU 0)", {}), ("x86-ort-1t on CPU 1", {"cpus": [1]}),
                      ("CPU 1, 50 warm-up + 100 timed x 5 processes", {"cpus": [1], "warmup_runs": 50, "timed_runs": 100, "repeats": 5})]:
        prof = base.model_copy(update=upd)
        lat = [measure_file(prof, p)["latency_ms"] for _ in range(10)]
        cv = statistics.stdev(lat) / statistics.fmean(lat)
        print(f"| {name} | {statistics.median(lat):.3f} | {cv:.2%} | {', '.join(f'{x:.2f}' for x in lat)} |", flush=True)
