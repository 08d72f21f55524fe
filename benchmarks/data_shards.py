"""Prepared shards against decoding an image folder in every trial: prepare throughput and
trial throughput from shards, from the folder and from in-memory arrays.

    python benchmarks/data_shards.py [--data ../shared/data/cifar10] [--per-class 300] [--source-px 320] [--noise 6]
                                     [--resolution 64] [--arch mnasnet-a1] [--width 0.5] [--json FILE]

Builds an ImageNet-style folder of JPEGs (CIFAR-10 training images upscaled to
``--source-px`` with a little pixel noise, JPEG quality 90, so a file's size and decode cost
are those of a photo of that size rather than of a smooth upscale; without
CIFAR-10, seeded noise images), then measures:

1. ``mnas data prepare`` images/s with 1 and 2 workers at ``--resolution``;
2. the data path alone: images/s of a source's batches (uint8, as a trial reads them) from
   the image folder (DataLoader, 2 workers, decode per epoch), the shards (memory-mapped) and
   the same images as in-memory arrays;
3. a real trial's training images/s (``train_model``, one epoch, same architecture,
   resolution, batch and threads) from each source.

Also prints ImageNet-1k's training set as shards at 64/96/128 px (computed). On a GPU the
trial rows measure what a GPU trial sees (the folder at a few hundred images/s per core).
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

from _machine import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def build_folder(root: Path, data: Path, per_class: int, source_px: int, noise: float) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    if (data / "train.npz").is_file() or list(data.glob("train*.npz")):
        from mnas.data import load_dataset

        ds = load_dataset(f"npz:{data}")
        parts = {"train": (ds.train.x, ds.train.y), "val": (ds.test.x, ds.test.y)}
        classes = ds.classes
    else:
        rng = np.random.default_rng(0)
        parts = {s: (rng.integers(0, 255, (per_class * 10, 32, 32, 3), dtype=np.uint8), np.repeat(np.arange(10), per_class))
                 for s in ("train", "val")}
        classes = [str(i) for i in range(10)]
    for split, (x, y) in parts.items():
        keep = per_class if split == "train" else max(1, per_class // 5)
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, idx in enumerate(np.flatnonzero(y == c)[:keep]):
                big = np.asarray(Image.fromarray(x[idx]).resize((source_px, source_px), Image.BICUBIC), np.float32)
                big = np.clip(big + rng.normal(0, noise, big.shape), 0, 255).astype(np.uint8)  # photo-like detail: JPEG size and decode cost
                Image.fromarray(big).save(folder / f"{i:05d}.jpg", quality=90)


def loader_rate(source, resolution: int, batch: int, epochs: int = 2) -> float:
    n, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        for x, _ in source.batches(batch, shuffle=True, seed=epoch, resolution=resolution):
            n += len(x)
    return n / (time.perf_counter() - t0)


def trial_rate(arch, train, val, num_classes: int, resolution: int, width: float, batch: int) -> float:
    from mnas.train import TrainConfig, train_model

    cfg = TrainConfig(epochs=1, batch_size=batch, resolution=resolution, width_mult=width, bn_calibration_images=0, seed=0)
    return train_model(arch, train, val, num_classes, cfg)["images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--source-px", type=int, default=320)
    ap.add_argument("--noise", type=float, default=6.0, help="std of pixel noise added to the upscaled images")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--arch", default="mnasnet-a1")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    from mnas.data import ArraySource, load_dataset
    from mnas.data_info import imagenet_shard_bytes
    from mnas.presets import load_architecture
    from mnas.shards import prepare_shards

    torch.set_num_threads(2)
    figures: dict = {"machine": machine_line(), "settings": vars(args) | {"data": str(args.data), "json": None}}
    with tempfile.TemporaryDirectory(prefix="mnas-shards-bench-") as tmp:
        folder = Path(tmp) / "folder"
        t0 = time.perf_counter()
        build_folder(folder, args.data, args.per_class, args.source_px, args.noise)
        images = sum(1 for _ in folder.rglob("*.jpg"))
        figures["folder"] = {"images": images, "bytes": sum(p.stat().st_size for p in folder.rglob("*.jpg")),
                             "build_s": time.perf_counter() - t0}
        figures["prepare"] = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            prepare_shards(folder, args.resolution, Path(tmp) / f"shards-{workers}", workers=workers)
            figures["prepare"][workers] = images / (time.perf_counter() - t0)
        shards = load_dataset(f"shards:{Path(tmp) / 'shards-2'}")
        folder_ds = load_dataset(f"imagefolder:{folder}")
        memory = ArraySource(np.array(shards.train.gather(shards.train.rows)), shards.train.labels.copy())
        test = ArraySource(np.array(shards.test.gather(shards.test.rows)), shards.test.labels.copy())
        sources = {"image folder (decode per epoch, 2 workers)": (folder_ds.train, folder_ds.test),
                   "shards (memory-mapped)": (shards.train, shards.test), "in-memory arrays": (memory, test)}
        arch = load_architecture(args.arch)
        figures["loader"], figures["trial"] = {}, {}
        for name, (train, val) in sources.items():
            figures["loader"][name] = loader_rate(train, args.resolution, args.batch)
            figures["trial"][name] = trial_rate(arch, train, val, shards.num_classes, args.resolution, args.width, args.batch)
    figures["imagenet_gb"] = {r: imagenet_shard_bytes(r) / 1e9 for r in (64, 96, 128)}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print_table(figures, args)


def print_table(f: dict, args) -> None:
    print(f"\n{f['machine']}")
    folder = f["folder"]
    print(f"folder: {folder['images']} JPEGs at {args.source_px} px ({folder['bytes'] / folder['images'] / 1e3:.0f} kB each); "
          f"prepared at {args.resolution} px")
    print("\n| prepare | images/s |\n|---|---|")
    for workers, rate in f["prepare"].items():
        print(f"| {workers} worker(s) | {rate:.0f} |")
    memory = f["trial"]["in-memory arrays"]
    print(f"\n| source | data path alone (img/s) | trial training (img/s, {args.arch} x{args.width}, {args.resolution} px, batch {args.batch}) "
          "| trial vs in-memory |\n|---|---|---|---|")
    for name in f["loader"]:
        print(f"| {name} | {f['loader'][name]:.0f} | {f['trial'][name]:.0f} | {f['trial'][name] / memory - 1:+.1%} |")
    print("\n| ImageNet-1k train as shards | GB |\n|---|---|")
    for r, gb in f["imagenet_gb"].items():
        print(f"| {r} px | {gb:.1f} |")


if __name__ == "__main__":
    main()
