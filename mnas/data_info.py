"""What a data spec holds (``mnas data info``), and the rule for data too small or too
imbalanced to search on (the best-practice guide advises against both: candidates' accuracies
are then noise, or favour the large classes). ``mnas proxy check`` applies the same rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_IMAGES, MIN_PER_CLASS, MAX_IMBALANCE = 5000, 50, 10.0


def data_warnings(images: int, smallest: int, largest: int, what: str = "the training split has") -> list[str]:
    """Warnings (with the numbers) for a training split of ``images`` with the given class extremes."""
    warnings = []
    if images < MIN_IMAGES or smallest < MIN_PER_CLASS:
        warnings.append(f"small dataset: {what} {images} images, {smallest} in its smallest class (advised: >= {MIN_IMAGES} "
                        f"and >= {MIN_PER_CLASS} per class); accuracies of candidates are noisy and rank them poorly")
    if smallest == 0 or largest / max(1, smallest) > MAX_IMBALANCE:
        warnings.append(f"imbalanced dataset: the largest class has {largest} images, the smallest {smallest} "
                        f"(more than {MAX_IMBALANCE:g}x); top-1 then favours the large classes")
    return warnings


def data_info(spec: str, resolution: int | None = None) -> dict:
    """Counts per class, image size, bytes on disk and as uint8 in memory, imbalance, warnings."""
    from mnas.data import ArraySource, FolderSource, load_dataset
    from mnas.shards import ShardSource

    ds = load_dataset(spec)
    info: dict = {"spec": ds.spec, "num_classes": ds.num_classes, "classes": ds.classes}
    for name, source in (("train", ds.train), ("test", ds.test)):
        counts = np.bincount(np.asarray(source.labels), minlength=ds.num_classes)
        info[name] = {"images": int(counts.sum()), "per_class": counts.tolist()}
    train_counts = np.array(info["train"]["per_class"])
    low, high = int(train_counts.min()), int(train_counts.max())
    info.update(smallest_class=low, largest_class=high, imbalance=None if low == 0 else high / low)
    images = info["train"]["images"] + info["test"]["images"]
    if isinstance(ds.train, ArraySource):
        side = ds.train.x.shape[1:3]
    elif isinstance(ds.train, ShardSource):
        side = ds.train.parts[0].shape[1:3] if ds.train.parts else (0, 0)
    else:
        side = (resolution, resolution) if resolution else None  # decoded at the proxy's resolution
    info["image_size"] = list(map(int, side)) if side else None
    info["memory_bytes"] = images * int(np.prod(side)) * 3 if side else None
    info["disk_bytes"] = _disk_bytes(ds.spec, ds.train, ds.test)
    info["warnings"] = data_warnings(info["train"]["images"], low, high)
    empty = [c for c, n in zip(ds.classes, train_counts) if n == 0]
    if empty:
        info["warnings"].append(f"{len(empty)} class(es) without training images: {', '.join(empty[:5])}")
    if isinstance(ds.train, FolderSource) and resolution is None:
        info["note"] = "image files are decoded at the proxy's resolution: give --resolution for the size in memory"
    return info


def _disk_bytes(spec: str, train, test) -> int | None:
    from mnas.data import FolderSource

    kind, _, arg = spec.partition(":")
    if isinstance(train, FolderSource):
        return int(sum(p.stat().st_size for p in [*train.paths, *test.paths]))
    if kind in ("npz", "shards"):
        return int(sum(p.stat().st_size for p in Path(arg).rglob("*") if p.is_file()))
    return None


def imagenet_shard_bytes(resolution: int, images: int = 1_281_167) -> int:
    """uint8 bytes of ImageNet-1k's training set at a resolution (the shard size, before labels)."""
    return images * resolution * resolution * 3
