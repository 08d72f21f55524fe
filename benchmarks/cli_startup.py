"""Start-up time of the commands that only read an experiment: status, report, estimate --from.

    python benchmarks/cli_startup.py runs/demo-... search/configs/demo.yaml [--repeats 5] [--mnas PATH]

Runs each command as a user does (the installed console script, a fresh process each time)
and prints the median wall time and whether PyTorch was imported (``-X importtime``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402


def timed(cmd: list[str], repeats: int) -> tuple[float, bool]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    torch = any(line.split("|")[-1].strip() == "torch" for line in proc.stderr.splitlines() if line.startswith("import time:"))
    return statistics.median(times), torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("config", type=Path, help="a search config for estimate --from")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mnas", default=str(Path(sys.executable).with_name("mnas")), help="the mnas executable to time")
    args = parser.parse_args()
    commands = {
        "mnas --help": ["--help"],
        "mnas status DIR --json": ["status", str(args.experiment), "--json"],
        "mnas report DIR": ["report", str(args.experiment)],
        "mnas estimate CONFIG --from DIR": ["estimate", str(args.config), "--from", str(args.experiment), "--json"],
    }
    print(f"# {machine_line()}")
    print(f"# {args.mnas}, median of {args.repeats} fresh processes")
    print("\n| command | seconds | imports torch |\n|---|---|---|")
    for name, cmd in commands.items():
        seconds, torch = timed([args.mnas, *cmd], args.repeats)
        print(f"| `{name}` | {seconds:.2f} | {'yes' if torch else 'no'} |")


if __name__ == "__main__":
    main()
