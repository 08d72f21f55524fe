"""Latency device farm: measurements per minute with one against two devices behind one
service, on the same stream of new models, and the demo search's wall time with each.

    python benchmarks/latency_farm.py [--models 24] [--resolution 128] [--clients 4] [--demo] [--json FILE]

The "devices" are two profiles of one kind pinned to different CPUs of this machine
(``x86-ort-1t`` settings, CPU 0 and CPU 1) in one pool; the stream is ``--models`` sampled
architectures exported to ONNX, sent by ``--clients`` concurrent clients (as a search's
parallel trials do) to a real ``mnas-latency serve`` on loopback. With ``--demo`` the
README's demo search also runs against the service with the pool of 1 and of 2 (on a 2-core
machine the devices and the training share the cores, so that row shows the overlap of
measuring and training rather than a farm's scale).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _machine import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def pool_profiles(tmp: Path, n: int) -> list[Path]:
    from devices.profile import load_profile

    base = load_profile("x86-ort-1t").model_dump()
    paths = []
    for k in range(n):
        path = tmp / f"cpu{k}.yaml"
        path.write_text(yaml.safe_dump({**base, "name": f"ort-cpu{k}", "cpus": [k], "pool": "x86"}))
        paths.append(path)
    return paths


def stream_rate(url: str, models: list[Path], clients: int) -> tuple[float, dict]:
    from latency_service.client import LatencyClient

    def one(path: Path) -> str:
        with LatencyClient(url, target="x86") as client:
            return client.measure(path)["device"]["name"]

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        names = list(pool.map(one, models))
    seconds = time.perf_counter() - t0
    return 60 * len(models) / seconds, {n: names.count(n) for n in sorted(set(names))}


def demo_wall_s(url: str, tmp: Path, tag: str) -> float:
    cfg = yaml.safe_load((REPO / "search" / "configs" / "demo.yaml").read_text())
    cfg["latency"] = {"url": url, "target": "x86", "resolution": cfg["latency"]["resolution"]}
    path = tmp / f"demo-{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("mnas")), "search", str(path), "--out", str(tmp / f"demo-{tag}"), "--no-progress"],
                   check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from service_helpers import Service

    from mnas.export import export_architecture
    from mnas.space import SearchSpace

    figures: dict = {"machine": machine_line(), "settings": {k: v for k, v in vars(args).items() if k != "json"}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="mnas-farm-") as tmp:
        tmp = Path(tmp)
        models = [export_architecture(SearchSpace().sample(1000 + i), tmp / f"m{i}.onnx", "onnx", args.resolution, 1000)
                  for i in range(args.models)]
        for n in (1, 2):
            svc = Service(pool_profiles(tmp, n), tmp / f"cache-{n}.sqlite")  # a fresh cache: every model is new
            try:
                per_minute, spread = stream_rate(svc.url, models, args.clients)
                row = {"devices": n, "measurements_per_min": per_minute, "spread": spread}
                if args.demo:
                    row["demo_wall_s"] = demo_wall_s(svc.url, tmp, str(n))
            finally:
                svc.stop()
            figures["rows"].append(row)
            print(row, flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print(f"\n{figures['machine']}\n{args.models} new models ({args.resolution} px, x86-ort-1t settings), {args.clients} concurrent clients")
    print("| devices in the pool | measurements / min | per device | demo search wall (s) |\n|---|---|---|---|")
    for r in figures["rows"]:
        demo = f"{r['demo_wall_s']:.0f}" if "demo_wall_s" in r else "-"
        print(f"| {r['devices']} | {r['measurements_per_min']:.1f} | {r['spread']} | {demo} |")


if __name__ == "__main__":
    main()
