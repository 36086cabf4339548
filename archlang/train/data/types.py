"""What every data source hands the trainer: splits, a dataset, and the shapes they must have."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

# Expected shapes tell a partial or wrong dataset from a good one.
KNOWN_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "svhn": ((3, 32, 32), 10),
}

GET_DATA_HINT = (
    "run without --data-dir on a machine with internet to let torchvision download it, "
    "or pass --data-dir pointing at a local copy (torchvision layout, an ImageFolder tree "
    "with train/ and test/, or a zip of one)"
)


def bomb_message() -> str:
    """What a file PIL refuses as a decompression bomb is told (over twice its MAX_IMAGE_PIXELS)."""
    from PIL import Image

    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return f"image refused as a decompression bomb (over {limit:,} pixels)"


@runtime_checkable
class SplitLike(Protocol):
    """A training or evaluation split, held whole (Split) or read image by image (StreamSplit)."""

    def __len__(self) -> int: ...

    def first(self, n: int) -> SplitLike: ...

    def sample_shape(self) -> tuple[int, ...]: ...


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def first(self, n: int) -> Split:
        return Split(self.images[:n], self.labels[:n])

    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class FolderData:
    """An ImageFolder tree decoded whole: both splits and the class names (train/ folder order)."""

    train: Split
    test: Split
    classes: list[str]


@dataclass
class Dataset:
    name: str
    train: SplitLike
    test: SplitLike
    num_classes: int
    # Per channel, in [0, 1] units, from the full training split; None for a streamed dataset,
    # whose recipe states them (reading every ImageNet image to compute them is not an option).
    mean: torch.Tensor | None
    std: torch.Tensor | None
    origin: str  # where it was read from, for the run folder


def default_data_root() -> Path:
    return Path(os.environ.get("ARCHLANG_DATA", Path.home() / ".cache" / "archlang" / "data"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARCHLANG_CACHE", Path.home() / ".cache" / "archlang" / "decoded"))


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std in [0, 1] units, exact, from 256-bin histograms.

    A histogram per channel needs no float copy of the images (a float64 copy of a large
    set and its square once took 11 GB); chunks bound the int64 temporaries to ~128 MB.
    """
    c = images.shape[1]
    counts = torch.zeros(c, 256, dtype=torch.float64)
    per_chunk = max(1, (16 << 20) // max(1, images[0].numel()))
    for chunk in images.split(per_chunk):
        for ch in range(c):
            counts[ch] += torch.bincount(chunk[:, ch].reshape(-1), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    total = counts.sum(dim=1).clamp_min(1.0)
    mean = (counts * values).sum(dim=1) / total
    var = (counts * (values - mean[:, None]).square()).sum(dim=1) / total
    return mean.float(), var.clamp_min(1e-12).sqrt().float()
