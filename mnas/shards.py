"""Image folders prepared once into memory-mapped uint8 shards (the ``shards:DIR`` data spec).

A proxy trial trains for seconds on small images; decoding JPEGs in every epoch of every
trial makes the CPU, not the model, set its pace. ``prepare_shards`` decodes an
``imagefolder`` (``train/<class>/*`` and ``val/<class>/*``) once and writes per split:

    DIR/train/x-00000.npy   uint8 N x R x R x 3 (NHWC), memory-mappable
    DIR/train/y-00000.npy   int64 labels
    DIR/train/files-00000.txt   the source file of each row (relative to the folder)
    DIR/train/done-00000.json   written last: rows, skipped files, sha256 of the x file
    DIR/manifest.json       source, settings, classes, counts, shards, checksums, skipped

Resize rule: the shorter side to ``round(R / crop)`` (``crop`` 0.875 by default, i.e. R x 1.14),
then the centre R x R (bilinear, PIL). A file that cannot be decoded is skipped, counted and
listed, never a crash. Files are taken in sorted order per class (``per_class`` keeps the
first K of each training class), so a prepare is deterministic; a killed prepare keeps its
finished shards and continues with the same settings.

``ShardSource`` reads the shards memory-mapped: every trial on a host shares the page cache
and no trial copies the split (subsets such as the stage-1 split are views over row indices).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnas.errors import DataError
from mnas.files import atomic_path, write_atomic

if TYPE_CHECKING:  # decoding workers import this module: they need no torch
    import torch

MANIFEST = "manifest.json"
SETTINGS = "prepare.json"
VERSION = 1
SPLITS = ("train", "val")
DECODE_CHUNK = 256  # files a worker decodes per task


def decode_image(path: Path, resolution: int, crop: float = 0.875) -> np.ndarray:
    """One image as uint8 R x R x 3: shorter side to round(R / crop), centre crop R."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        short = max(resolution, round(resolution / crop))
        scale = short / min(img.size)
        img = img.resize((max(short, round(img.width * scale)), max(short, round(img.height * scale))), Image.BILINEAR)
        left, top = (img.width - resolution) // 2, (img.height - resolution) // 2
        return np.asarray(img.crop((left, top, left + resolution, top + resolution)), dtype=np.uint8).copy()


def _decode_chunk(job: tuple[list[str], int, float]) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """(images, kept positions, skipped (file, reason)) of a list of files."""
    files, resolution, crop = job
    images, kept, skipped = [], [], []
    for i, f in enumerate(files):
        try:
            images.append(decode_image(Path(f), resolution, crop))
            kept.append(i)
        except Exception as exc:  # a corrupt or unreadable file is the dataset's, not ours: skip and list it
            skipped.append((f, f"{type(exc).__name__}: {exc}"[:200]))
    x = np.stack(images) if images else np.zeros((0, resolution, resolution, 3), np.uint8)
    return x, kept, skipped


@dataclass(frozen=True)
class PrepareSettings:
    source: str
    resolution: int
    crop: float
    classes: list[str]
    per_class: int | None
    shard_size: int

    def to_dict(self) -> dict:
        return {"version": VERSION, **self.__dict__}


def select_classes(root: Path, classes: int | None, class_list: Path | None) -> list[str]:
    """The class names to prepare: all folders of train/, the first N, or those in a file."""
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"image folder not found: {train} (expected DIR/train/<class>/ and DIR/val/<class>/)")
    found = sorted(d.name for d in train.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"{train}: no class folders")
    if class_list is not None:
        if not class_list.is_file():
            raise DataError(f"class list not found: {class_list}")
        wanted = [line.strip() for line in class_list.read_text().splitlines() if line.strip()]
        missing = [c for c in wanted if c not in found]
        if missing:
            raise DataError(f"{class_list}: classes not in {train}: {missing[:5]}")
        return wanted
    if classes is not None:
        if classes < 1:
            raise DataError(f"--classes must be at least 1 (got {classes})")
        return found[:classes]
    return found


def list_files(split_dir: Path, classes: list[str], per_class: int | None) -> tuple[list[Path], np.ndarray]:
    """Sorted image files of a split's class folders (a missing or empty class gives none)."""
    from mnas.sources import IMAGE_SUFFIXES

    files, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        found = found[:per_class] if per_class else found
        files += found
        labels += [label] * len(found)
    return files, np.array(labels, dtype=np.int64)


def prepare_shards(root: Path, resolution: int, out: Path, classes: int | None = None, class_list: Path | None = None,
                   per_class: int | None = None, workers: int = 1, shard_size: int = 4096, crop: float = 0.875,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Decode ``root`` (an image folder) into shards under ``out``; returns the manifest.

    ``per_class`` limits the training images per class (the validation split is kept whole);
    ``progress(done, total)`` is called after each shard (images, including skipped)."""
    root, out = Path(root).expanduser().resolve(), Path(out)
    if not 8 <= resolution <= 1024:
        raise DataError(f"--resolution must be between 8 and 1024 (got {resolution})")
    if not 0.1 <= crop <= 1:
        raise DataError(f"--crop must be in [0.1, 1] (got {crop})")
    if per_class is not None and per_class < 1:
        raise DataError(f"--per-class must be at least 1 (got {per_class})")
    if shard_size < 1 or workers < 1:
        raise DataError("--shard-size and --workers must be at least 1")
    names = select_classes(root, classes, class_list)
    if not (root / "val").is_dir():
        raise DataError(f"image folder not found: {root / 'val'} (the test split of stage 2)")
    settings = PrepareSettings(str(root), resolution, crop, names, per_class, shard_size)
    _claim(out, settings)
    jobs = []  # (split, shard number, files, labels)
    for split in SPLITS:
        files, labels = list_files(root / split, names, per_class if split == "train" else None)
        if split == "train" and not files:
            raise DataError(f"{root / 'train'}: no images in the chosen classes")
        for k, start in enumerate(range(0, len(files), shard_size)):
            jobs.append((split, k, files[start : start + shard_size], labels[start : start + shard_size]))
    total = sum(len(j[2]) for j in jobs)
    todo = [j for j in jobs if not (out / j[0] / f"done-{j[1]:05d}.json").is_file()]
    done = total - sum(len(j[2]) for j in todo)
    if progress:
        progress(done, total)
    chunks = [(t, start) for t, j in enumerate(todo) for start in range(0, len(j[2]), DECODE_CHUNK)]
    pieces: list = []
    for (t, start), piece in zip(chunks, _decoded([todo[t][2][s : s + DECODE_CHUNK] for t, s in chunks], resolution, crop, workers)):
        pieces.append((start, piece))
        split, k, files, labels = todo[t]
        done += len(piece[1]) + len(piece[2])
        if start + DECODE_CHUNK >= len(files):  # the shard's last chunk: write it
            x = np.concatenate([p[0] for _, p in pieces])
            kept = [begin + i for begin, p in pieces for i in p[1]]
            skipped = [(str(Path(f).relative_to(root)), why) for _, p in pieces for f, why in p[2]]
            _write_shard(out / split, k, x, labels[kept], [str(files[i].relative_to(root)) for i in kept], skipped)
            pieces = []
        if progress:
            progress(done, total)
    return _write_manifest(out, settings, jobs)


def _claim(out: Path, settings: PrepareSettings) -> None:
    """Start or continue a prepare in ``out``; refuse one made with other settings."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / SETTINGS
    if path.is_file():
        if json.loads(path.read_text()) != json.loads(json.dumps(settings.to_dict())):
            raise DataError(f"{out} holds shards prepared with other settings ({path}); use another --out or delete it")
        return
    if any(out.iterdir()):
        raise DataError(f"{out} is not empty and holds no shards; give an empty or new --out")
    path.write_text(json.dumps(settings.to_dict(), indent=1))


def _decoded(chunks: list[list[Path]], resolution: int, crop: float, workers: int) -> Iterator:
    """Decoded chunks in order: in this process, or by ``workers`` processes."""
    args = [([str(f) for f in files], resolution, crop) for files in chunks]
    if workers == 1 or len(chunks) < 2:
        yield from map(_decode_chunk, args)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_decode_chunk, args)


def _write_shard(split_dir: Path, k: int, x: np.ndarray, y: np.ndarray, files: list[str], skipped: list) -> None:
    """A shard's files, each written whole then renamed; its done-file last."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, arr in ((f"x-{k:05d}.npy", x), (f"y-{k:05d}.npy", y.astype(np.int64))):
        with atomic_path(split_dir / name) as tmp, open(tmp, "wb") as f:
            np.save(f, arr)
    (split_dir / f"files-{k:05d}.txt").write_text("".join(f + "\n" for f in files))
    done = {"rows": len(x), "sha256": file_sha256(split_dir / f"x-{k:05d}.npy"), "skipped": skipped}
    write_atomic(split_dir / f"done-{k:05d}.json", json.dumps(done))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(out: Path, settings: PrepareSettings, jobs) -> dict:
    splits = {}
    for split in SPLITS:
        shards, counts, skipped = [], np.zeros(len(settings.classes), np.int64), []
        for s, k, _, _ in jobs:
            if s != split:
                continue
            done = json.loads((out / split / f"done-{k:05d}.json").read_text())
            labels = np.load(out / split / f"y-{k:05d}.npy")
            counts += np.bincount(labels, minlength=len(settings.classes))
            shards.append({"x": f"{split}/x-{k:05d}.npy", "y": f"{split}/y-{k:05d}.npy", "files": f"{split}/files-{k:05d}.txt",
                           "rows": done["rows"], "sha256": done["sha256"]})
            skipped += [{"file": f, "reason": why} for f, why in done["skipped"]]
        splits[split] = {"images": int(counts.sum()), "per_class": counts.tolist(), "shards": shards, "skipped": skipped}
    manifest = {**settings.to_dict(), "layout": "NHWC uint8", "num_classes": len(settings.classes),
                "empty_classes": [c for c, n in zip(settings.classes, splits["train"]["per_class"]) if n == 0], "splits": splits}
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


# ----- reading ----------------------------------------------------------------------------
class ShardSource:
    """Rows of memory-mapped shards, seen through an index (a subset is a view, never a copy)."""

    def __init__(self, parts: list[np.ndarray], y: np.ndarray, rows: np.ndarray | None = None):
        self.parts, self.all_y = parts, y
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.rows = np.arange(len(y)) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> np.ndarray:
        return self.all_y[self.rows]

    def subset(self, indices: np.ndarray) -> ShardSource:
        return ShardSource(self.parts, self.all_y, self.rows[np.asarray(indices)])

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """uint8 images of global ``rows`` (in that order), read from their shards."""
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        shape = self.parts[0].shape[1:] if self.parts else (0, 0, 3)
        out = np.empty((len(rows), *shape), np.uint8)
        for p in np.unique(part):
            mask = part == p
            local = rows[mask] - self.offsets[p]
            order = np.argsort(local, kind="stable")  # read each shard front to back
            out[np.flatnonzero(mask)[order]] = self.parts[p][local[order]]
        return out

    def batches(self, batch_size: int, shuffle: bool, seed: int, resolution: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        from mnas.sources import batch_order

        order = batch_order(len(self), shuffle, seed)
        for start in range(0, len(order), batch_size):
            rows = self.rows[order[start : start + batch_size]]
            yield torch.from_numpy(self.gather(rows)), torch.from_numpy(self.all_y[rows])

    def nbytes(self) -> int:
        per_image = int(np.prod(self.parts[0].shape[1:])) if self.parts else 0
        return len(self) * per_image + len(self) * 8

    def to_device(self, device: torch.device):
        """The rows copied onto ``device`` once, a chunk at a time (no host copy of the split)."""
        import torch

        from mnas.sources import DeviceSource

        shape = self.parts[0].shape[1:] if self.parts else (0, 0, 3)
        x = torch.empty((len(self), *shape), dtype=torch.uint8, device=device)
        chunk = 16384
        for start in range(0, len(self), chunk):
            x[start : start + chunk] = torch.from_numpy(self.gather(self.rows[start : start + chunk])).to(device)
        return DeviceSource(x, torch.from_numpy(self.labels.astype(np.int64)).to(device))


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not root.is_dir():
        raise DataError(f"shards folder not found: {root}")
    if not path.is_file():
        hint = " (a prepare was started here: run the same mnas data prepare again to finish it)" if (root / SETTINGS).is_file() else ""
        raise DataError(f"{root}: no {MANIFEST}; prepare shards with mnas data prepare{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("version") != VERSION:
        raise DataError(f"{path}: shard format version {manifest.get('version')!r}, this mnas reads {VERSION}")
    return manifest


def open_split(root: Path, manifest: dict, split: str) -> ShardSource:
    """A split's shards, memory-mapped; a missing or damaged shard is one clear error."""
    parts, labels = [], []
    r = manifest["resolution"]
    for shard in manifest["splits"][split]["shards"]:
        if shard["rows"] == 0:
            continue
        x, y = _load(root / shard["x"], np.uint8), _load(root / shard["y"], np.int64)
        if x.shape != (shard["rows"], r, r, 3) or y.shape != (shard["rows"],):
            raise DataError(f"damaged shard {root / shard['x']}: shape {x.shape} with {y.shape[0]} labels, the manifest "
                            f"says {shard['rows']} x {r} x {r} x 3; prepare the shards again")
        parts.append(x)
        labels.append(y)
    y = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return ShardSource(parts, y)


def _load(path: Path, dtype) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing shard file {path}; prepare the shards again")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise DataError(f"damaged shard file {path} ({type(exc).__name__}: {exc}); prepare the shards again") from None
    if arr.dtype != dtype:
        raise DataError(f"damaged shard file {path}: dtype {arr.dtype}, expected {np.dtype(dtype)}")
    return arr


def verify_shards(root: Path, manifest: dict) -> list[str]:
    """Shard files whose checksum differs from the manifest's."""
    bad = []
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            path = root / shard["x"]
            if not path.is_file() or file_sha256(path) != shard["sha256"]:
                bad.append(str(path))
    return bad
