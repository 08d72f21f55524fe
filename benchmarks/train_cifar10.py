"""Train reference architectures on CIFAR-10 (npz) and print top-1, time and images/s.

    python benchmarks/train_cifar10.py --data ../shared/data/cifar10 --limit 10000 --epochs 5

On a CPU use --limit to train on a class-stratified subset; the test set is always the
full 10,000 images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

from mnas.data import load_dataset, stratified_split  # noqa: E402
from mnas.presets import PRESETS  # noqa: E402
from mnas.train import TrainConfig, train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--archs", default="mobilenet-v2,mnasnet-a1")
    parser.add_argument("--limit", type=int, default=None, help="train on this many images (stratified)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()

    ds = load_dataset(f"npz:{args.data}")
    train, test = ds.stage2()
    if args.limit and args.limit < len(train):
        keep, _ = stratified_split(train.labels, 1 - args.limit / len(train), seed=0)
        train = train.subset(keep)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, resolution=args.resolution)
    print(f"# {machine_line()}")
    print(f"# CIFAR-10 npz, {len(train):,} train images, {len(test):,} test images, {args.epochs} epochs, "
          f"{args.resolution} px, batch {args.batch_size}, lr {cfg.peak_lr():g}")
    print("| architecture | device | precision | top-1 | train time (s) | images/s |")
    print("|---|---|---|---|---|---|")
    for name in args.archs.split(","):
        m = train_model(PRESETS[name], train, test, ds.num_classes, cfg)
        print(f"| {name} | {m['device']} | {m['precision']} | {m['top1']:.4f} | {m['train_seconds']:.1f} | {m['images_per_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
