"""Latency/memory predictor accuracy on architectures the build never saw.

    python benchmarks/predictor.py --device x86-ort-1t --resolution 224 --validate 200
    python benchmarks/predictor.py --device x86-ort-1t-steady --resolution 64 --models 100 --profiled-models 500
    python benchmarks/predictor.py --device x86-litert-1t-steady-224 --resolution 224 --layers 250 --models 100 --validate 100

Builds a predictor (``search.latency.predictor``; measurements cached in ``--cache``, so a rerun
only fits), then measures ``--validate`` architectures sampled with seeds the build never
drew (10,000 + i) on the same device and compares: share within +-10%, RMSE in %, Kendall
tau, for latency and peak memory; plus the build cost and the prediction time.

``--repeat N`` measures the first N of those architectures a second time, fresh (not from
the cache), and gives the same figures for the second measurement against the first: the
machine's own agreement with itself, which bounds what any predictor can score here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_line  # noqa: E402

from latency_service.client import make_measurer  # noqa: E402
from mnas.space import SearchSpace  # noqa: E402
from search.latency.predictor import PROFILED_MODELS, Predictor, build_predictor, save  # noqa: E402
from search.latency.predictor.fitting import error_figures  # noqa: E402
from search.latency.predictor.measurements import MeasurementCache, Measurer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="x86-ort-1t-quick")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=None, help="layers measured alone (default: as mnas predictor build)")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--profiled-models", type=int, default=PROFILED_MODELS, help="whole models profiled per operator (0: none)")
    parser.add_argument("--validate", type=int, default=200)
    parser.add_argument("--cache", default="runs/predictor-bench.sqlite")
    parser.add_argument("--out", default=None, help="predictor file (default runs/predictor-DEVICE-R.json)")
    parser.add_argument("--repeat", type=int, default=0, help="re-measure this many validation models fresh (noise ceiling)")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    space = SearchSpace()
    source = make_measurer(device=args.device)
    t0 = time.perf_counter()
    doc = build_predictor(source, space, [args.resolution], args.num_classes, args.cache, args.layers, args.models,
                          args.profiled_models,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    build_s = time.perf_counter() - t0
    out = save(doc, args.out or f"runs/predictor-{args.device}-{args.resolution}.json")
    predictor = Predictor.load(out)

    archs = [space.sample(10_000 + i) for i in range(args.validate)]
    cache = MeasurementCache(args.cache)
    measured_lat, measured_mem, t_measure = [], [], time.perf_counter()
    try:
        measurer = Measurer(source, cache)
        for i, arch in enumerate(archs, 1):
            m = measurer.model(arch, args.resolution, args.num_classes)
            measured_lat.append(m["latency_ms"])
            measured_mem.append(m["memory_mb"])
            if i % 20 == 0:
                print(f"  validation: {i}/{len(archs)} measured", file=sys.stderr, flush=True)
        repeat_lat, repeat_mem = remeasure(source, archs[:args.repeat], args.resolution, args.num_classes)
    finally:
        cache.close()
        source.close()
    measure_s = time.perf_counter() - t_measure
    t = time.perf_counter()
    predictions = [predictor.predict(a, args.resolution) for a in archs]
    per_arch_ms = (time.perf_counter() - t) / len(archs) * 1000  # first pass: each new layer's costs computed once
    t = time.perf_counter()
    for a in archs:
        predictor.predict(a, args.resolution)
    warm_ms = (time.perf_counter() - t) / len(archs) * 1000  # as in a search, where layers recur
    lat = error_figures(np.array([p.latency_ms for p in predictions]), np.array(measured_lat))
    mem = error_figures(np.array([p.peak_memory_mb for p in predictions]), np.array(measured_mem))
    part = doc["resolutions"][str(args.resolution)]
    b = part["build"]
    report = {"machine": machine_line(), "device": args.device, "resolution": args.resolution, "latency": lat, "memory": mem,
              "build": b, "build_wall_s": build_s, "validation_measure_s": measure_s, "predict_ms_per_arch": per_arch_ms,
              "predict_ms_per_arch_warm": warm_ms,
              "layer_model": part["validation"]["layer_model"],
              "layer_times": part["validation"]["layer_times"], "measured_latency_ms_range": [min(measured_lat), max(measured_lat)]}
    print(f"# {report['machine']}")
    print(f"# {args.device}, {args.resolution} px, {args.num_classes} classes; build: {b['layers_measured']} of {b['layer_configs']} layer "
          f"configs + {b['models_measured']} models measured, {b['models_profiled']} profiled ({b['fresh_measurements']} new, "
          f"{build_s / 60:.1f} min); layer times {part['layer_times']}, layer model: {part['validation']['layer_model']['chosen']}")
    print(f"# {len(archs)} unseen architectures, measured latency {min(measured_lat):.3f}-{max(measured_lat):.3f} ms")
    print("\n| quantity | within +-10% | RMSE % | Kendall tau |\n|---|---|---|---|")
    for name, f in (("latency", lat), ("peak memory", mem)):
        print(f"| {name} | {f['within_10pct']:.1%} | {f['rmse_pct']:.1f} | {f['kendall_tau']:.3f} |")
    if args.repeat:
        n = len(repeat_lat)
        report["repeat"] = {"models": n, "latency": error_figures(np.array(repeat_lat), np.array(measured_lat[:n])),
                            "memory": error_figures(np.array(repeat_mem), np.array(measured_mem[:n]))}
        for name, key in (("latency", "latency"), ("peak memory", "memory")):
            f = report["repeat"][key]
            print(f"| {name}, measured again vs first ({n} models) | {f['within_10pct']:.1%} | {f['rmse_pct']:.1f} | {f['kendall_tau']:.3f} |")
    print(f"\nprediction: {per_arch_ms:.3f} ms per architecture on a first pass, {warm_ms:.3f} ms again (Python, one at a time)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))


def remeasure(source, archs: list, resolution: int, num_classes: int) -> tuple[list[float], list[float]]:
    """Each architecture exported and measured again on the source, bypassing the cache."""
    from mnas.export import export_architecture

    lat, mem = [], []
    for i, arch in enumerate(archs, 1):
        with tempfile.TemporaryDirectory(prefix="mnas-repeat-") as tmp:
            path = export_architecture(arch, Path(tmp) / f"m.{source.model_format()}", source.model_format(), resolution, num_classes)
            result = source.measure(path)
        lat.append(result["latency_ms"])
        mem.append(result["peak_memory_mb"])
        if i % 20 == 0:
            print(f"  repeat: {i}/{len(archs)} measured", file=sys.stderr, flush=True)
    return lat, mem


if __name__ == "__main__":
    main()
