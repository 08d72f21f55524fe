"""Datasets from a spec string, the stage-1 90/10 split, and batch preparation.

Specs:
  ``digits``            scikit-learn's bundled 8x8 digits (1,797 images), upscaled at batch
                        time; a fixed, class-stratified 80/20 train/test split (seed 0).
  ``npz:DIR``           ``DIR/train*.npz`` and ``DIR/test.npz``, each with uint8 NHWC ``x``
                        (RGB or grey) and integer ``y`` (e.g. CIFAR-10 as npz).
  ``imagefolder:DIR``   ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg``.
  ``shards:DIR``        an image folder prepared once by ``mnas data prepare`` into
                        memory-mapped uint8 shards (``mnas.shards``); read without decoding,
                        shared through the page cache by every trial on a host.

Images stay uint8 until a batch is prepared on the training device, where they are
resized, augmented (random crop with padding, horizontal flip) and normalised. On a GPU
an in-memory split is copied there once (``DeviceSource``): no DataLoader workers, no
host-to-device copy per batch.
Stage 1 (search) trains on 90% of the training data and validates on the other 10%,
split per class with a fixed seed; stage 2 trains on all of it and tests on the test split.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnas.errors import DataError
from mnas.sources import IMAGE_SUFFIXES, ArraySource, DeviceSource, FolderSource, batch_order  # noqa: F401  (re-exported)

MEAN = torch.tensor([0.485, 0.456, 0.406]) * 255
STD = torch.tensor([0.229, 0.224, 0.225]) * 255
@dataclass
class Dataset:
    spec: str
    train: ArraySource | FolderSource
    test: ArraySource | FolderSource
    num_classes: int
    classes: list[str]

    def stage1(self, seed: int = 0, val_fraction: float = 0.1):
        """(search train, search validation): a class-stratified split of the training data."""
        train_idx, val_idx = stratified_split(self.train.labels, val_fraction, seed)
        return self.train.subset(train_idx), self.train.subset(val_idx)

    def stage2(self):
        """(all training data, the real test/val split)."""
        return self.train, self.test


def stratified_split(labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split that keeps each class's share in both parts; returns sorted indices."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1) (got {val_fraction})")
    indices = np.arange(len(labels))
    try:
        train_idx, val_idx = train_test_split(indices, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise DataError(f"cannot make a stratified {1 - val_fraction:.0%}/{val_fraction:.0%} split: {exc}") from None
    return np.sort(train_idx), np.sort(val_idx)


def fraction_of(source, fraction: float, seed: int = 0):
    """A seeded, class-stratified share of a source (a proxy's data_fraction); all of it at 1."""
    if fraction >= 1:
        return source
    n = len(source)
    classes = len(np.unique(source.labels))
    if round(n * fraction) < classes:
        raise DataError(f"data_fraction {fraction:g} of {n} images leaves fewer images than the {classes} classes")
    keep, _ = stratified_split(source.labels, 1 - fraction, seed)
    return source.subset(keep)


# ----- loading ----------------------------------------------------------------------------
def load_dataset(spec: str) -> Dataset:
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return _load_digits()
    if kind == "npz" and arg:
        return _load_npz(Path(arg).expanduser())
    if kind == "imagefolder" and arg:
        return _load_imagefolder(Path(arg).expanduser())
    if kind == "shards" and arg:
        return _load_shards(Path(arg).expanduser())
    raise DataError(f"unknown data spec {spec!r}; use 'digits', 'npz:DIR', 'imagefolder:DIR' or 'shards:DIR'")


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.repeat((digits.images * (255 / 16)).round().astype(np.uint8)[..., None], 3, axis=3)
    y = digits.target.astype(np.int64)
    train_idx, test_idx = stratified_split(y, 0.2, seed=0)
    return Dataset("digits", ArraySource(x[train_idx], y[train_idx]), ArraySource(x[test_idx], y[test_idx]), 10, [str(i) for i in range(10)])


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"x", "y"} - set(f.files)
            if missing:
                raise DataError(f"{path}: missing array(s) {sorted(missing)} (need uint8 NHWC 'x' and integer 'y')")
            x, y = f["x"], f["y"]
            classes = [str(c) for c in f["classes"]] if "classes" in f.files else None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{path}: 'x' must be uint8 with shape (N, H, W, 3) or (N, H, W, 1), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'y' must be integers, one per image (got {y.dtype} {y.shape} for {len(x)} images)")
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: labels must be >= 0 (found {y.min()})")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=3)
    return x, y.astype(np.int64), classes


def _load_npz(root: Path) -> Dataset:
    if not root.is_dir():
        raise DataError(f"npz data folder not found: {root}")
    train_files = sorted(root.glob("train*.npz"))
    if not train_files:
        raise DataError(f"{root}: no train*.npz files")
    if not (root / "test.npz").is_file():
        raise DataError(f"{root}: no test.npz file")
    parts = [_read_npz(p) for p in train_files]
    if len({p[0].shape[1:] for p in parts}) > 1:
        raise DataError(f"{root}: train files have different image shapes")
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    tx, ty, classes = _read_npz(root / "test.npz")
    num_classes = int(max(y.max(), ty.max())) + 1
    classes = classes or parts[0][2] or [str(i) for i in range(num_classes)]
    return Dataset(f"npz:{root}", ArraySource(x, y), ArraySource(tx, ty), max(num_classes, len(classes)), classes)


def _scan_folder(split_dir: Path, classes: list[str] | None) -> tuple[list[Path], np.ndarray, list[str]]:
    if not split_dir.is_dir():
        raise DataError(f"image folder not found: {split_dir}")
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"{split_dir}: no class folders")
    classes = classes or found
    unknown = set(found) - set(classes)
    if unknown:
        raise DataError(f"{split_dir}: class folders not in train/: {sorted(unknown)}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for p in sorted((split_dir / name).glob("*")) if (split_dir / name).is_dir() else []:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(label)
    if not paths:
        raise DataError(f"{split_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, np.array(labels, dtype=np.int64), classes


def _load_imagefolder(root: Path) -> Dataset:
    train_paths, train_y, classes = _scan_folder(root / "train", None)
    val_paths, val_y, _ = _scan_folder(root / "val", classes)
    return Dataset(f"imagefolder:{root}", FolderSource(train_paths, train_y), FolderSource(val_paths, val_y), len(classes), classes)


def _load_shards(root: Path) -> Dataset:
    from mnas.shards import open_split, read_manifest

    manifest = read_manifest(root)
    classes = manifest["classes"]
    train, test = open_split(root, manifest, "train"), open_split(root, manifest, "val")
    return Dataset(f"shards:{root}", train, test, len(classes), classes)


# ----- batches on the device --------------------------------------------------------------
def prepare_batch(
    x: torch.Tensor,
    resolution: int,
    train: bool,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
    augmentation: str = "crop",
) -> torch.Tensor:
    """uint8 NHWC batch (already on its device) -> normalised float NCHW at ``resolution``.

    Training batches are augmented with draws from ``generator``, so runs are reproducible:
    ``crop``, a random crop after zero padding of resolution/8 pixels and a horizontal flip
    (CIFAR style); ``resized_crop``, a random crop of 25-100% of the area at an aspect ratio
    of 3/4-4/3 resized to the resolution, and a flip (ImageNet style, for prepared shards).
    """
    x = x.permute(0, 3, 1, 2).float()
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=x.shape[-1] > resolution)
    mean, std = _normalisation(x.device)
    x = (x - mean) / std
    if train and augmentation == "resized_crop":
        x = random_resized_crop_flip(x, generator)
    elif train:
        x = random_crop_flip(x, max(1, resolution // 8), generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@functools.lru_cache(maxsize=8)
def _normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return MEAN.to(device).view(1, 3, 1, 1), STD.to(device).view(1, 3, 1, 1)


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched random crop (zero padding) and horizontal flip, one draw per image."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    # draws happen where the generator lives: a CUDA generator keeps the hot loop free of host syncs
    gdev = generator.device if generator is not None else torch.device("cpu")
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(dev, non_blocking=True)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(dev, non_blocking=True)
    flip = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(dev, non_blocking=True)
    rows = (oy[:, None] + torch.arange(h, device=dev)[None, :])  # n, h
    cols = ox[:, None] + torch.arange(w, device=dev)[None, :]  # n, w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # n, h, w, c
    return out.permute(0, 3, 1, 2).contiguous()


def random_resized_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                             scale: tuple[float, float] = (0.25, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Batched random-resized crop and horizontal flip in one bilinear resampling on the
    batch's device (an affine grid per image), one draw per image."""
    import math

    n = x.shape[0]
    gdev = generator.device if generator is not None else torch.device("cpu")
    draw = lambda: torch.rand(n, generator=generator, device=gdev).to(x.device, non_blocking=True)  # noqa: E731
    area = scale[0] + (scale[1] - scale[0]) * draw()
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * draw()
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop size as a share of the side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * draw() - 1) * (1 - w)  # crop centre in [-1, 1] grid coordinates, inside the image
    cy = (2 * draw() - 1) * (1 - h)
    flip = torch.where(draw() < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
