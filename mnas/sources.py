"""Where a split's images live and how they are read in batches: arrays in memory (or memory-mapped),
arrays already on the GPU, and image folders decoded lazily. ``mnas.data`` builds datasets of
these; ``mnas.shards`` reads prepared shards as arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def batch_order(n: int, shuffle: bool, seed: int) -> np.ndarray:
    """The order in which in-memory sources (host or device) hand out their images."""
    return np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)


@dataclass
class ArraySource:
    """Images held in memory as uint8 NHWC with 3 channels."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def labels(self) -> np.ndarray:
        return self.y

    def subset(self, indices: np.ndarray) -> ArraySource:
        return ArraySource(self.x[indices], self.y[indices])

    def batches(self, batch_size: int, shuffle: bool, seed: int, resolution: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = batch_order(len(self), shuffle, seed)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])

    def nbytes(self) -> int:
        return self.x.nbytes + self.y.nbytes

    def to_device(self, device: torch.device) -> DeviceSource:
        """Copy the whole split to ``device`` once (uint8), so no batch crosses PCIe again."""
        # np.array copies: the arrays may be read-only memory maps of the trial data cache
        return DeviceSource(torch.from_numpy(np.array(self.x)).to(device), torch.from_numpy(np.array(self.y, dtype=np.int64)).to(device))


@dataclass
class DeviceSource:
    """A split held on the training device as uint8 NHWC: batches are gathered there.

    The batch order is the same seeded permutation as ``ArraySource`` draws, so moving the
    data to the GPU changes the speed of a trial, not what it sees.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, shuffle: bool, seed: int, resolution: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.from_numpy(batch_order(len(self), shuffle, seed)).to(self.x.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.x[idx], self.y[idx]


@dataclass
class FolderSource:
    """Image files decoded on demand (datasets too large to hold in memory)."""

    paths: list[Path]
    y: np.ndarray
    workers: int = 2

    def __len__(self) -> int:
        return len(self.y)

    @property
    def labels(self) -> np.ndarray:
        return self.y

    def subset(self, indices: np.ndarray) -> FolderSource:
        return FolderSource([self.paths[i] for i in indices], self.y[indices], self.workers)

    def batches(self, batch_size: int, shuffle: bool, seed: int, resolution: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = _DecodedImages(self.paths, self.y, resolution)
        gen = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=self.workers
        )
        yield from loader


class _DecodedImages(torch.utils.data.Dataset):
    """Decode, resize the short side and centre-crop to a square uint8 HWC tensor."""

    def __init__(self, paths: list[Path], y: np.ndarray, size: int):
        self.paths, self.y, self.size = paths, y, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB")
            scale = self.size / min(img.size)
            img = img.resize((max(self.size, round(img.width * scale)), max(self.size, round(img.height * scale))))
            left, top = (img.width - self.size) // 2, (img.height - self.size) // 2
            img = img.crop((left, top, left + self.size, top + self.size))
            return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()), int(self.y[i])
