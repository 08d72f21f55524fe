"""int8 against float: latency and memory of the presets and sampled architectures, per runtime.

    python benchmarks/int8_latency.py [--resolution 224] [--samples 20] [--profiles x86-ort-1t x86-litert-1t] [--json FILE]

Each model is exported in float and int8 (static, per-channel; random calibration inputs,
which set the scales but not the graph, so the latency is the deployed model's) in the
profile's format and measured in-process with the profile. Prints per model the float and
int8 latency and peak memory, and per profile the Kendall tau between float and int8
latency over the sampled architectures: does a search on float latency rank the int8
models the same way?
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

PRESET_NAMES = ["mnasnet-a1", "mnasnet-b1", "mobilenet-v2", "mobilenet-v3-large", "mobilenet-v3-small", "efficientnet-b0", "fbnet-c"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--profiles", nargs="+", default=["x86-ort-1t", "x86-litert-1t"])
    ap.add_argument("--presets", nargs="*", default=PRESET_NAMES)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from scipy.stats import kendalltau

    from latency_service.client import make_measurer
    from mnas.errors import ExportError
    from mnas.export import export_model
    from mnas.model import build_model
    from mnas.presets import load_architecture
    from mnas.quantize import quantize_model, random_inputs
    from mnas.space import SearchSpace

    models = [(name, load_architecture(name)) for name in args.presets]
    models += [(f"sample {s}", SearchSpace().sample(s)) for s in range(args.samples)]
    rows, failures = [], []
    print(machine_line())
    for profile in args.profiles:
        measurer = make_measurer(device=profile)
        fmt = measurer.model_format()
        try:
            for name, arch in models:
                model = build_model(arch, 1000)
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    f = export_model(model, Path(tmp) / f"f.{fmt}", fmt, args.resolution)
                    try:
                        q = quantize_model(model, Path(tmp) / f"q.{fmt}", fmt, args.resolution, "int8", random_inputs(args.resolution))
                    except ExportError as exc:  # the converter refuses some graphs: count them, go on
                        failures.append({"profile": profile, "model": name, "error": str(exc)[:300]})
                        print(f"{profile} {name}: int8 export failed: {str(exc)[:200]}", flush=True)
                        continue
                    export_s = time.perf_counter() - t0
                    a, b = measurer.measure(f), measurer.measure(q)
                row = {"profile": profile, "model": name, "float_ms": a["latency_ms"], "int8_ms": b["latency_ms"],
                       "float_mb": a["peak_memory_mb"], "int8_mb": b["peak_memory_mb"], "float_size_mb": a["model_size_mb"],
                       "int8_size_mb": b["model_size_mb"], "export_s": export_s}
                rows.append(row)
                print(f"{profile} {name}: float {row['float_ms']:.3f} ms / {row['float_mb']:.1f} MB, int8 {row['int8_ms']:.3f} ms / "
                      f"{row['int8_mb']:.1f} MB ({row['float_ms'] / row['int8_ms']:.2f}x)", flush=True)
        finally:
            measurer.close()
    print("\n| profile | model | float ms | int8 ms | speed-up | float MB | int8 MB | file MB float / int8 |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['profile']} | {r['model']} | {r['float_ms']:.3f} | {r['int8_ms']:.3f} | {r['float_ms'] / r['int8_ms']:.2f}x | "
              f"{r['float_mb']:.1f} | {r['int8_mb']:.1f} | {r['float_size_mb']:.2f} / {r['int8_size_mb']:.2f} |")
    summary = {}
    for profile in args.profiles:
        sampled = [r for r in rows if r["profile"] == profile and r["model"].startswith("sample")]
        if len(sampled) >= 3:
            tau = kendalltau([r["float_ms"] for r in sampled], [r["int8_ms"] for r in sampled]).statistic
            summary[profile] = tau
            print(f"{profile}: Kendall tau float vs int8 latency over {len(sampled)} sampled architectures: {tau:.3f}")
    for f in failures:
        print(f"int8 export failed: {f['profile']} {f['model']}: {f['error'][:160]}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "resolution": args.resolution, "rows": rows, "tau": summary,
                                         "failures": failures}, indent=1))


if __name__ == "__main__":
    main()
