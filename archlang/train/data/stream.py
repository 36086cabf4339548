"""ImageNet-size datasets, read from disk image by image in DataLoader worker processes.

The papers' small datasets are held whole as uint8 tensors (archlang.train.data.batching); ImageNet
(1.28M JPEGs of every size, ~140 GB decoded) cannot be. Here torchvision's ImageFolder lists
the files and torchvision's transforms do the papers' ImageNet augmentation (RandomResizedCrop
and flips for training; Resize and CenterCrop for evaluation) in DataLoader workers. Workers
hand back uint8 batches; normalisation happens on the training device, as for the small sets.

Every random draw belongs to an image's place in the epoch, never to a worker: the order comes
from a generator seeded by (seed, epoch) and each image's crop and flip from a seed drawn
with it. A run resumed mid-epoch, or read by another number of workers, sees the same batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archlang.errors import ArchlangError, shorten
from archlang.train.data.batching import Batching
from archlang.train.data.types import bomb_message

# A real ImageNet photo is at most ~10 MP; far more is a decompression bomb, refused from the header.
MAX_PIXELS = 64 << 20

# Where an ImageNet copy's evaluation split may live: the usual prepared layout calls it val/.
EVAL_DIRS = ("val", "test")

IMAGENET_HINT = (
    "ImageNet cannot be downloaded automatically: get ILSVRC2012 from image-net.org and pass "
    "--data-dir DIR, where DIR has train/<class>/*.JPEG and val/<class>/*.JPEG (class folders in "
    "both), or the ILSVRC2012 train/val tar files and devkit, which torchvision's ImageNet unpacks"
)


@dataclass(frozen=True)
class StreamSplit:
    """Image files and their labels; images are read and transformed only when batched."""

    samples: tuple[tuple[str, int], ...]
    size: int  # side of the square crops the network sees
    resize: int  # evaluation: shorter side resized to this, then centre-cropped to `size`
    scale: tuple[float, float]  # RandomResizedCrop's area range

    def __len__(self) -> int:
        return len(self.samples)

    def first(self, n: int) -> StreamSplit:
        return StreamSplit(self.samples[:n], self.size, self.resize, self.scale)

    def sample_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)


def _imagefolder_samples(folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
    from torchvision import datasets

    try:
        listing = datasets.ImageFolder(str(folder), loader=lambda path: path)
    except (FileNotFoundError, OSError) as exc:  # no class folders, or no images in them
        raise ArchlangError(f"not an ImageFolder tree ({exc})", path=str(folder), hint=IMAGENET_HINT) from None
    return list(listing.samples), list(listing.classes)


def _torchvision_imagenet(root: Path, split: str) -> tuple[list[tuple[str, int]], list[str]]:
    """torchvision's ImageNet: unpacks the ILSVRC2012 archives on first use, then lists them."""
    from torchvision import datasets

    if not any((root / name).exists() for name in ("meta.bin", "ILSVRC2012_devkit_t12.tar.gz")):
        raise ArchlangError("ImageNet dataset not found: no train/ and val/ class folders, no ILSVRC2012 archives",
                            path=str(root), hint=IMAGENET_HINT)
    try:
        ds = datasets.ImageNet(str(root), split=split, loader=lambda path: path)
    except ImportError as exc:  # the devkit is a MATLAB file: torchvision reads it with scipy
        raise ArchlangError(f"unpacking the ILSVRC2012 archives needs {exc.name}", path=str(root),
                            hint=f"pip install {exc.name}, or unpack them into train/ and val/ class folders") from None
    except (RuntimeError, OSError, ValueError) as exc:
        raise ArchlangError(f"ImageNet dataset not found ({exc})", path=str(root), hint=IMAGENET_HINT) from None
    return list(ds.samples), [c[0] if isinstance(c, tuple) else str(c) for c in ds.classes]


def _eval_dir(root: Path) -> Path | None:
    return next((root / d for d in EVAL_DIRS if (root / d).is_dir()), None)


def load_imagenet(root: Path, *, size: int, resize: int, scale: tuple[float, float]) -> tuple[StreamSplit, StreamSplit, int]:
    """The train and evaluation splits of an ImageNet copy, and its number of classes."""
    if not root.exists():
        raise ArchlangError("ImageNet dataset not found", path=str(root), hint=IMAGENET_HINT)
    eval_dir = _eval_dir(root)
    if (root / "train").is_dir() and eval_dir is not None:
        train, classes = _imagefolder_samples(root / "train")
        test, test_classes = _imagefolder_samples(eval_dir)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise ArchlangError(f"classes {unknown[:3]} of {eval_dir.name}/ do not exist in train/", path=str(root),
                                hint="the evaluation split must use the training split's class folders")
        # ImageFolder numbers each tree's classes on its own; use the training tree's numbers.
        index = {c: i for i, c in enumerate(classes)}
        test = [(path, index[test_classes[label]]) for path, label in test]
    else:
        train, classes = _torchvision_imagenet(root, "train")
        test, _ = _torchvision_imagenet(root, "val")
    if not train or not test:
        raise ArchlangError("the ImageNet copy has an empty split", path=str(root), hint=IMAGENET_HINT)
    # ImageFolder lists class by class, so "the first N images" (--subset) would be a few
    # classes. A fixed permutation (the same on every machine) mixes them.
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    mixed = tuple(train[i] for i in order)
    return (StreamSplit(mixed, size, resize, scale), StreamSplit(tuple(test), size, resize, scale), len(classes))


def _read_rgb(path: str):
    """One image file as RGB, its size checked from the header before its pixels are decoded."""
    import stat
    import warnings

    from PIL import Image

    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block a worker for ever
        raise ValueError(f"{path}: not a regular file (a FIFO, socket or device named like an image)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(f"{path}: image is {img.width}x{img.height} pixels, over the limit of "
                                 f"{MAX_PIXELS:,} pixels (a decompression bomb?)")
            return img.convert("RGB")


@dataclass(frozen=True)
class _Decoded:
    image: torch.Tensor | None  # uint8 [3, size, size]
    label: int
    error: str | None  # why the file could not be read; raised by the main process


class _Images(torch.utils.data.Dataset):
    """Item (index, seed) of a split: that image, transformed with draws seeded by `seed`."""

    def __init__(self, split: StreamSplit, train: bool, flip: bool) -> None:
        from torchvision.transforms import v2

        self.samples = split.samples
        if train:
            flips = [v2.RandomHorizontalFlip()] if flip else []
            self.transform = v2.Compose([v2.RandomResizedCrop(split.size, scale=split.scale, antialias=True),
                                         *flips, v2.PILToTensor()])
        else:
            self.transform = v2.Compose([v2.Resize(split.resize, antialias=True), v2.CenterCrop(split.size),
                                         v2.PILToTensor()])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> _Decoded:
        from PIL import Image, UnidentifiedImageError

        index, seed = key
        path, label = self.samples[index]
        try:
            rgb = _read_rgb(path)
        except ValueError as exc:  # our own refusals, with their whole message
            return _Decoded(None, label, str(exc))
        except Image.DecompressionBombError:
            return _Decoded(None, label, f"{path}: {bomb_message()}")
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            return _Decoded(None, label, f"corrupted image ({path}: {shorten(str(exc), 200)})")
        # The transforms draw from torch's global generator: seed it per image, inside a fork
        # so that the training process's own stream (dropout) is untouched when workers=0.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _Decoded(self.transform(rgb), label, None)


def _collate(items: Sequence[_Decoded]) -> tuple[torch.Tensor, torch.Tensor] | str:
    bad = next((item.error for item in items if item.error is not None), None)
    if bad is not None:
        return bad
    return torch.stack([item.image for item in items]), torch.tensor([item.label for item in items], dtype=torch.long)


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class StreamLoader(Batching):
    """The BatchLoader interface over a StreamSplit: batches decoded by DataLoader workers."""

    def __init__(self, split: StreamSplit, *, flip: bool = False, workers: int | None = None, **common: Any) -> None:
        super().__init__(len(split), **common)
        self.images = _Images(split, train=self.train, flip=flip and self.train)
        self.workers = default_workers() if workers is None else workers

    def _keys(self, epoch: int, start_step: int) -> list[list[tuple[int, int]]]:
        """Per batch of this process, from start_step: (image index, seed of its crop and flip)."""
        n = self.total
        if self.train:
            g = self.epoch_generator(epoch)
            order, seeds = torch.randperm(n, generator=g), torch.randint(0, 2**62, (n,), generator=g)
        else:
            order, seeds = torch.arange(n), torch.zeros(n, dtype=torch.long)
        order_list, seed_list = order.tolist(), seeds.tolist()
        return [[(order_list[i], seed_list[i]) for i in range(*self.shard(step).indices(n))]
                for step in range(start_step, len(self))]

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        keys = self._keys(epoch, start_step)
        if not keys:
            return
        loader = torch.utils.data.DataLoader(
            self.images, batch_sampler=keys, num_workers=self.workers, collate_fn=_collate,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
            # Its own generator: the DataLoader's base-seed draw must not move the training stream.
            generator=torch.Generator().manual_seed(epoch))
        for batch in loader:
            if isinstance(batch, str):
                raise ArchlangError(batch, hint="re-extract or re-download the dataset, or remove the file")
            images, labels = batch
            x = self.normalized(images.to(self.device, non_blocking=True))
            yield self.formatted(x), labels.to(self.device, non_blocking=True)
