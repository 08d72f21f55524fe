"""Latency service figures: ORT vs LiteRT per preset and resolution, repeatability, cost per
model, cached answers, and many concurrent clients.

    python benchmarks/latency.py [--repeats 10] [--clients 16] [--requests 20]

Uses the shipped profiles x86-ort-1t and x86-litert-1t (1 thread pinned to CPU 0,
20 warm-up + 50 timed runs in each of 3 fresh processes per measurement).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _machine import machine_line  # noqa: E402

from devices.measure import measure_file  # noqa: E402
from devices.profile import load_profile  # noqa: E402
from latency_service.client import LatencyClient  # noqa: E402
from mnas.export import export_architecture  # noqa: E402
from mnas.presets import PRESETS  # noqa: E402
from mnas.space import SearchSpace  # noqa: E402


def runtime_table(tmp: Path, repeats: int) -> None:
    profiles = {"onnx": load_profile("x86-ort-1t"), "tflite": load_profile("x86-litert-1t")}
    print(f"\n## ORT vs LiteRT, {repeats} repeated measurements each (1 thread, CPU 0)\n")
    print("| model | px | runtime | median latency (ms) | CV over repeats | within-run CV | peak memory (MB) | file (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("mnasnet-a1", "mnasnet-b1", "mobilenet-v2"):
        for res in (224, 32):
            for fmt, profile in profiles.items():
                path = export_architecture(PRESETS[name], tmp / f"{name}-{res}.{fmt}", fmt, res)
                runs = [measure_file(profile, path) for _ in range(repeats)]
                lat = [r["latency_ms"] for r in runs]
                cv = statistics.stdev(lat) / statistics.fmean(lat)
                print(
                    f"| {name} | {res} | {'ORT' if fmt == 'onnx' else 'LiteRT'} | {statistics.median(lat):.3f} | {cv:.2%} | "
                    f"{statistics.median(r['cv'] for r in runs):.2%} | {statistics.median(r['peak_memory_mb'] for r in runs):.1f} | "
                    f"{runs[0]['model_size_mb']:.1f} |",
                    flush=True,
                )


def service_table(tmp: Path, clients: int, requests: int) -> None:
    from service_helpers import Service

    profile_path = Path(__file__).resolve().parents[1] / "devices" / "profiles" / "x86-ort-1t.yaml"
    svc = Service(profile_path, tmp / "cache.sqlite")
    try:
        client = LatencyClient(svc.url)
        space = SearchSpace()
        new_times, cached_times = [], []
        for seed in range(5):
            t0 = time.perf_counter()
            path = export_architecture(space.sample(seed), tmp / f"s{seed}.onnx", "onnx", 224)
            first = client.measure(path)
            new_times.append(time.perf_counter() - t0)
            assert not first["cached"]
            for _ in range(5):
                t0 = time.perf_counter()
                again = client.measure(path)
                cached_times.append(time.perf_counter() - t0)
                assert again["cached"] and again["latency_ms"] == first["latency_ms"]
        print("\n## Service: cost per answer (x86-ort-1t, 224 px, random architectures)\n")
        print("| answer | median seconds | max seconds | n |")
        print("|---|---|---|---|")
        print(f"| new model (export + upload + measure) | {statistics.median(new_times):.2f} | {max(new_times):.2f} | {len(new_times)} |")
        print(f"| cached | {statistics.median(cached_times) * 1000:.1f} ms | {max(cached_times) * 1000:.1f} ms | {len(cached_times)} |")

        models = [export_architecture(space.sample(100 + i), tmp / f"c{i}.onnx", "onnx", 64) for i in range(4)]

        def one_client(i: int):
            out = []
            with LatencyClient(svc.url) as c:
                for j in range(requests):
                    m = (i + j) % len(models)
                    out.append((m, c.measure(models[m])))
            return out

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            answers = [a for batch in pool.map(one_client, range(clients)) for a in batch]
        wall = time.perf_counter() - t0
        per_model = {}
        for m, r in answers:
            per_model.setdefault(m, set()).add(r["latency_ms"])
        consistent = all(len(v) == 1 for v in per_model.values())
        fresh = sum(not r["cached"] for _, r in answers)
        print(f"\n## Service: {clients} concurrent clients x {requests} requests (4 models, 64 px)\n")
        print("| requests | answered | fresh measurements | consistent per model | wall seconds |")
        print("|---|---|---|---|---|")
        print(f"| {clients * requests} | {len(answers)} | {fresh} | {'yes' if consistent else 'NO'} | {wall:.1f} |")
    finally:
        svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--skip-runtimes", action="store_true")
    args = parser.parse_args()
    print(f"# {machine_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_runtimes:
            runtime_table(Path(tmp), args.repeats)
        service_table(Path(tmp), args.clients, args.requests)


if __name__ == "__main__":
    main()
