"""The papers' datasets in torchvision's own layout, read by torchvision's dataset classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from archlang.errors import ArchlangError, shorten
from archlang.train.data.types import GET_DATA_HINT, KNOWN_SHAPES, Split

# The folder torchvision's class for each dataset reads, relative to its root.
MARKERS = {"mnist": "MNIST", "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "svhn": "svhn"}


def missing(name: str, root: Path, detail: str, download: bool) -> ArchlangError:
    how = "download failed (no internet?); " if download else ""
    return ArchlangError(f"{name} dataset not found: {detail}", path=str(root), hint=how + GET_DATA_HINT)


def has_torchvision_copy(name: str, data_dir: Path) -> bool:
    return name in MARKERS and (data_dir / MARKERS[name]).exists()


def torchvision_split(name: str, root: Path, train: bool, download: bool, extra: bool = False) -> Split:
    """Read one split with torchvision's own dataset class, as uint8 [N, C, H, W]."""
    from torchvision import datasets

    try:
        if name == "mnist":
            ds = datasets.MNIST(str(root), train=train, download=download)
            return Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long())
        if name in ("cifar10", "cifar100"):
            cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            ds = cls(str(root), train=train, download=download)
            return Split(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                         torch.tensor(ds.targets, dtype=torch.long))
        if name == "svhn":
            split = "extra" if extra else ("train" if train else "test")
            ds = datasets.SVHN(str(root / "svhn"), split=split, download=download)
            return Split(torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels.astype(np.int64)))
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted ..."
        raise missing(name, root, shorten(str(exc), 300), download) from None
    except (OSError, ValueError, EOFError, KeyError, IndexError) as exc:  # truncated or damaged files
        raise missing(name, root, f"could not read it ({type(exc).__name__}: {shorten(str(exc), 300)})",
                      download) from None
    raise ArchlangError(f"no torchvision loader for dataset '{shorten(name)}'")


def check_split(name: str, split: Split, where: str) -> None:
    shape, classes = KNOWN_SHAPES[name]
    if tuple(split.images.shape[1:]) != shape:
        raise ArchlangError(f"{name} images have shape {tuple(split.images.shape[1:])}, expected {shape}", path=where)
    if len(split) == 0 or int(split.labels.min()) < 0 or int(split.labels.max()) >= classes:
        raise ArchlangError(f"{name} labels are not in 0..{classes - 1} (or the split is empty)", path=where)


def load_torchvision(name: str, root: Path, download: bool, extra: bool) -> tuple[Split, Split]:
    """Both splits of a torchvision dataset (SVHN's extra images appended to train when asked)."""
    if not download and not has_torchvision_copy(name, root):
        raise missing(name, root, f"no torchvision copy of {name} under this folder", download)
    if download:
        root.mkdir(parents=True, exist_ok=True)
    train = torchvision_split(name, root, True, download)
    if extra:
        more = torchvision_split(name, root, True, download, extra=True)
        train = Split(torch.cat([train.images, more.images]), torch.cat([train.labels, more.labels]))
    test = torchvision_split(name, root, False, download)
    for split in (train, test):
        check_split(name, split, str(root))
    return train, test
