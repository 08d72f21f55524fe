"""Time per Ax ``ask`` as the experiment grows: 50, 200 and 500 observed trials.

    python benchmarks/ax_ask.py [--observed 50 200 500] [--asks 3] [--saasbo] [--space mnasnet]

Each point: a fresh Ax controller on the space, ``observed`` random architectures told with the
synthetic reward of tests/test_controllers.py (attached as finished Ax trials, as a resumed
search has them), then ``asks`` timed ask+tell rounds (each ask refits the model). Also the
compressed checkpoint size. One thread for torch, as in a search (the controller leaves the
cores to trials).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _machine import machine_line  # noqa: E402
from test_controllers import synthetic_reward  # noqa: E402

from mnas.space import load_space  # noqa: E402
from search.controllers.bayes import AxController, quiet  # noqa: E402


def timed_asks(space, observed: int, asks: int, saasbo: bool, seed: int = 0) -> dict:
    controller = AxController(space.cardinalities, seed, tokens=space.tokens, saasbo=saasbo)
    rng = np.random.default_rng(seed)
    client = controller.client
    with quiet():
        for _ in range(observed):
            indices = space.sample_indices(rng)
            index = client.attach_trial(parameters=controller.parameters(indices))
            client.complete_trial(index, raw_data={"reward": synthetic_reward(indices)})
    seconds, rewards = [], []
    for _ in range(asks):
        started = time.perf_counter()
        proposal = controller.ask()
        seconds.append(time.perf_counter() - started)
        rewards.append(synthetic_reward(proposal.indices))
        controller.tell(proposal, rewards[-1])
    return {"observed": observed, "median_s": statistics.median(seconds), "max_s": max(seconds),
            "step": controller.generation_step(), "checkpoint_kb": len(controller.to_bytes()) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observed", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--asks", type=int, default=3)
    parser.add_argument("--saasbo", action="store_true")
    parser.add_argument("--space", default="mnasnet")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = load_space(args.space)
    print(machine_line())
    print(f"space {space.name}: {len(space.tokens)} tokens; model {'SAASBO' if args.saasbo else 'Ax default GP'}; "
          f"{args.asks} timed asks per point")
    print(f"{'observed':>9} {'median ask s':>13} {'max ask s':>10} {'step':>6} {'checkpoint KiB':>15}")
    for n in args.observed:
        r = timed_asks(space, n, args.asks, args.saasbo)
        print(f"{r['observed']:>9} {r['median_s']:>13.2f} {r['max_s']:>10.2f} {r['step']:>6} {r['checkpoint_kb']:>15.0f}", flush=True)


if __name__ == "__main__":
    main()
