"""Datasets as whole uint8 tensors, and a batch iterator that augments whole batches.

Per-image PIL transforms cost as much as a small network on 2 CPU cores, so every
dataset is decoded once into a uint8 tensor [N, C, H, W] (kept on the training device)
and crops/flips are one gather per batch. All randomness of an epoch (order, crop
offsets, flips) is drawn up front from a generator seeded by (seed, epoch): a run
resumed at any step of any epoch sees exactly the batches of an uninterrupted run.
Under torchrun every process draws the same plan and takes its own contiguous shard of
each global batch, so the processes together see exactly one single-process batch.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from archlang.errors import ArchlangError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

# Expected shapes tell a partial or wrong dataset from a good one.
KNOWN_SHAPES = {
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
class Dataset:
    name: str
    train: Split  # or a stream.StreamSplit (ImageNet): the same len/first/sample_shape
    test: Split
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


def _channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # float64 sums over chunks: exact enough and never a float copy of the whole set.
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(8192):
        x = chunk.to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()


def _missing(name: str, root: Path, detail: str, download: bool) -> ArchlangError:
    how = "download failed (no internet?); " if download else ""
    return ArchlangError(f"{name} dataset not found: {detail}", path=str(root), hint=how + GET_DATA_HINT)


def _torchvision_split(name: str, root: Path, train: bool, download: bool, extra: bool = False) -> Split:
    """Read one split with torchvision's own dataset class, as uint8 [N, C, H, W]."""
    from torchvision import datasets

    try:
        if name == "mnist":
            ds = datasets.MNIST(str(root), train=train, download=download)
            return Split(ds.data.unsqueeze(1).contiguous(), ds.targets.long())
        if name in ("cifar10", "cifar100"):
            cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            ds = cls(str(root), train=train, download=download)
            return Split(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.long))
        if name == "svhn":
            split = "extra" if extra else ("train" if train else "test")
            ds = datasets.SVHN(str(root / "svhn"), split=split, download=download)
            return Split(torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels.astype(np.int64)))
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted ..."
        raise _missing(name, root, f"{exc}", download) from None
    except (OSError, ValueError, EOFError) as exc:  # truncated files, failed download
        raise _missing(name, root, f"could not read it ({type(exc).__name__}: {exc})", download) from None
    raise ArchlangError(f"no torchvision loader for dataset '{name}'")


def _check_split(name: str, split: Split, where: str) -> None:
    shape, classes = KNOWN_SHAPES[name]
    if tuple(split.images.shape[1:]) != shape:
        raise ArchlangError(f"{name} images have shape {tuple(split.images.shape[1:])}, expected {shape}", path=where)
    if len(split) == 0 or int(split.labels.min()) < 0 or int(split.labels.max()) >= classes:
        raise ArchlangError(f"{name} labels are not in 0..{classes - 1} (or the split is empty)", path=where)


# ---- ImageFolder trees and zips of them -------------------------------------------------


@dataclass
class _Entry:
    split: str
    label: str
    name: str  # path inside the zip or the folder


def _split_entries(names: list[str]) -> list[_Entry]:
    """Image files under `[prefix/]train|test/<class>/file`, in ImageFolder order."""
    entries = []
    for name in names:
        parts = name.strip("/").split("/")
        if len(parts) < 3 or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        split, label = parts[-3], parts[-2]
        if split in ("train", "test"):
            entries.append(_Entry(split, label, name))
    # ImageFolder sorts classes, then files within a class.
    entries.sort(key=lambda e: (e.split, e.label, e.name))
    return entries


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            arr = np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ArchlangError(f"corrupted image ({exc})", path=where, hint="re-extract or re-download the dataset") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _stack(arrays: list[np.ndarray], entries: list[_Entry], where: str) -> torch.Tensor:
    shape = arrays[0].shape
    for arr, entry in zip(arrays, entries):
        if arr.shape != shape:
            raise ArchlangError(f"image {entry.name} has shape {arr.shape}, the first image {shape}; "
                                "an ImageFolder dataset must have images of one size", path=where)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _decode_tree(entries: list[_Entry], read: callable, where: str) -> dict[str, Split]:
    classes = sorted({e.label for e in entries if e.split == "train"})
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, Split] = {}
    for split in ("train", "test"):
        chosen = [e for e in entries if e.split == split]
        if not chosen:
            raise ArchlangError(f"no images under {split}/<class>/ in the ImageFolder data", path=where,
                                hint="expected train/<class>/*.jpg and test/<class>/*.jpg")
        unknown = sorted({e.label for e in chosen} - set(index))
        if unknown:
            raise ArchlangError(f"test classes {unknown} do not exist in train/", path=where)
        # PIL releases the GIL while decoding: threads use every core.
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            arrays = list(pool.map(lambda e: _decode(read(e.name), f"{where}:{e.name}"), chosen))
        labels = torch.tensor([index[e.label] for e in chosen], dtype=torch.long)
        splits[split] = Split(_stack(arrays, chosen, where), labels)
    splits["classes"] = classes  # type: ignore[assignment]
    return splits


def _cache_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def _load_cache(cache: Path) -> tuple[dict[str, Split], list[str]] | None:
    import json

    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if not cache.is_file():
        return None
    try:
        with safe_open(str(cache), framework="pt") as f:
            classes = json.loads(f.metadata()["classes"])
        t = load_file(str(cache))
        return {s: Split(t[f"{s}_images"], t[f"{s}_labels"]) for s in ("train", "test")}, classes
    except (SafetensorError, OSError, KeyError, ValueError):
        return None  # a broken cache is rebuilt, never trusted


def _save_cache(cache: Path, splits: dict[str, Split], classes: list[str]) -> None:
    import json

    from safetensors.torch import save

    from archlang.fileio import atomic_write_bytes

    tensors = {}
    for s in ("train", "test"):
        tensors[f"{s}_images"] = splits[s].images
        tensors[f"{s}_labels"] = splits[s].labels
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, save(tensors, metadata={"classes": json.dumps(classes)}))
    except OSError:
        pass  # a cache is an optimisation; a read-only home must not stop training


def load_imagefolder(path: Path, cache_dir: Path | None = None) -> tuple[dict[str, Split], list[str]]:
    """An ImageFolder tree or a zip of one, decoded once and cached as uint8 safetensors."""
    if not path.exists():
        raise ArchlangError("ImageFolder data not found", path=str(path),
                            hint="expected a folder or a .zip with train/<class>/*.jpg and test/<class>/*.jpg")
    cache = (cache_dir or default_cache_dir()) / f"{path.name}-{_cache_key(path)}-v2.safetensors"
    cached = _load_cache(cache)
    if cached is not None:
        return cached
    if path.is_file():
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchlangError(f"not a readable zip file ({exc})", path=str(path),
                                hint="the file may be truncated; copy or download it again") from None
        with archive:
            entries = _split_entries(archive.namelist())
            lock_free_reads = {e.name: archive.read(e.name) for e in entries} if entries else {}
        read = lock_free_reads.__getitem__
    else:
        entries = _split_entries([str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()])
        read = lambda name: (path / name).read_bytes()
    if not entries:
        raise ArchlangError("no images found in ImageFolder layout", path=str(path),
                            hint="expected train/<class>/*.jpg and test/<class>/*.jpg")
    splits = _decode_tree(entries, read, str(path))
    classes = splits.pop("classes")  # type: ignore[arg-type]
    # ImageFolder order is class by class, so "the first N images" (--subset) would be one class.
    # A fixed permutation (the same on every machine) mixes them, like the official binary files.
    order = torch.randperm(len(splits["train"]), generator=torch.Generator().manual_seed(0))
    splits["train"] = Split(splits["train"].images[order].contiguous(), splits["train"].labels[order].contiguous())
    _save_cache(cache, splits, classes)
    return splits, classes


# ---- dataset resolution -----------------------------------------------------------------


def _imagefolder_candidate(name: str, data_dir: Path) -> Path | None:
    """An ImageFolder tree or zip for `name` inside or at data_dir, if there is one."""
    if data_dir.is_file() and data_dir.suffix == ".zip":
        return data_dir
    if (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        return data_dir
    for candidate in (f"{name}-jpeg.zip", f"{name}.zip", f"{name}-jpeg", name):
        p = data_dir / candidate
        if p.suffix == ".zip" and p.is_file():
            return p
        if p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir():
            return p
    return None


def _has_torchvision_copy(name: str, data_dir: Path) -> bool:
    marker = {"mnist": "MNIST", "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "svhn": "svhn"}[name]
    return (data_dir / marker).exists()


def load_dataset(
    name: str,
    *,
    data_dir: Path | None = None,
    download: bool | None = None,
    cache_dir: Path | None = None,
    extra: bool = False,
) -> Dataset:
    """Load a dataset whole, as uint8 tensors.

    Without data_dir, torchvision downloads into ~/.cache/archlang/data (or $ARCHLANG_DATA).
    With data_dir (a local copy), nothing is downloaded unless download=True.
    """
    if download is None:
        download = data_dir is None
    root = Path(data_dir) if data_dir is not None else default_data_root()
    if data_dir is not None and not root.exists():
        raise ArchlangError(f"--data-dir does not exist (looking for {name})", path=str(root), hint=GET_DATA_HINT)
    if name == "imagefolder" or (name in ("cifar10", "cifar100", "svhn") and not _has_torchvision_copy(name, root)
                                 and _imagefolder_candidate(name, root) is not None):
        folder = root if name == "imagefolder" else _imagefolder_candidate(name, root)
        splits, classes = load_imagefolder(folder, cache_dir)
        if name != "imagefolder":
            _check_split(name, splits["train"], str(folder))
            _check_split(name, splits["test"], str(folder))
        num_classes = len(classes) if name == "imagefolder" else KNOWN_SHAPES[name][1]
        train, test, origin = splits["train"], splits["test"], str(folder)
    elif name in KNOWN_SHAPES:
        if not download and not _has_torchvision_copy(name, root):
            raise _missing(name, root, f"no torchvision copy of {name} under this folder", download)
        root.mkdir(parents=True, exist_ok=True) if download else None
        train = _torchvision_split(name, root, True, download)
        if extra:
            more = _torchvision_split(name, root, True, download, extra=True)
            train = Split(torch.cat([train.images, more.images]), torch.cat([train.labels, more.labels]))
        test = _torchvision_split(name, root, False, download)
        for split in (train, test):
            _check_split(name, split, str(root))
        num_classes, origin = KNOWN_SHAPES[name][1], str(root)
    else:
        raise ArchlangError(f"unknown dataset '{name}'", hint="datasets: mnist, cifar10, cifar100, svhn, imagefolder")
    mean, std = _channel_stats(train.images)
    return Dataset(name, train, test, num_classes, mean, std, origin)


# ---- batches ------------------------------------------------------------------------------


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-padding index map (edge pixel not repeated), like F.pad(mode='reflect')."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


@dataclass
class EpochPlan:
    """All random draws of one epoch, so any step of it can be replayed exactly."""

    order: torch.Tensor  # [N] sample indices
    offsets: torch.Tensor  # [N, 2] crop offsets in [0, 2 * pad]
    flips: torch.Tensor  # [N] bool


class Batching:
    """What every batch iterator shares: global batches, their per-process shards, and the
    normalisation x = u8 * a + b, which folds /255, mean and std into one multiply-add."""

    def __init__(self, total: int, *, batch_size: int, mean: torch.Tensor, std: torch.Tensor, normalize: str,
                 device: torch.device, train: bool, seed: int = 0, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.total, self.batch_size, self.device, self.train, self.seed = total, batch_size, device, train, seed
        self.channels_last, self.dtype = channels_last, dtype
        self.rank, self.world_size = rank, world_size
        c = mean.numel()
        shift = mean if normalize in ("mean", "meanstd") else torch.zeros(c)
        scale = std if normalize == "meanstd" else torch.ones(c)
        self.a = (1.0 / (255.0 * scale)).view(1, c, 1, 1).to(device, dtype)
        self.b = (-shift / scale).view(1, c, 1, 1).to(device, dtype)

    def __len__(self) -> int:
        return (self.total + self.batch_size - 1) // self.batch_size

    def global_count(self, step: int) -> int:
        """Images in global batch `step`: batch_size, except a shorter last batch."""
        return min(self.batch_size, self.total - step * self.batch_size)

    def shard(self, step: int) -> slice:
        """This process's part of global batch `step`, as positions in the epoch's order.

        Contiguous and balanced like torch.tensor_split: in a short last batch the first
        processes take one image more, so rank 0 (whose BN buffers DDP broadcasts) never
        gets an empty shard. With one process it is the whole batch.
        """
        start, n = step * self.batch_size, self.global_count(step)
        size, extra = divmod(n, self.world_size)
        first = start + self.rank * size + min(self.rank, extra)
        return slice(first, first + size + (1 if self.rank < extra else 0))

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """The source of every random draw of one training epoch: a function of (seed, epoch) only."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)

    def normalized(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.dtype) * self.a + self.b

    def formatted(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last and x.dim() == 4 else torch.contiguous_format
        return x.contiguous(memory_format=fmt)


class BatchLoader(Batching):
    """Batches of normalised float tensors from a uint8 split on the training device."""

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        normalize: str,
        device: torch.device,
        train: bool,
        crop_pad: int = 0,
        pad_mode: str = "reflect",
        flip: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(len(split), batch_size=batch_size, mean=mean, std=std, normalize=normalize, device=device,
                         train=train, seed=seed, channels_last=channels_last, dtype=dtype, rank=rank,
                         world_size=world_size)
        self.data = split.to(device)
        self.crop_pad = crop_pad if train else 0
        self.pad_mode = pad_mode
        self.flip = flip and train

    def plan(self, epoch: int) -> EpochPlan:
        n = len(self.data)
        if not self.train:
            return EpochPlan(torch.arange(n), torch.zeros(n, 2, dtype=torch.long), torch.zeros(n, dtype=torch.bool))
        g = self.epoch_generator(epoch)
        order = torch.randperm(n, generator=g)
        offsets = torch.randint(0, 2 * self.crop_pad + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return EpochPlan(order, offsets, flips)

    def _gather(self, idx: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        images = self.data.images
        _, _, h, w = images.shape
        p = self.crop_pad
        rows = offsets[:, :1] - p + torch.arange(h, device=self.device)  # [B, H]
        cols = offsets[:, 1:] - p + torch.arange(w, device=self.device)  # [B, W]
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        inside = None
        if self.pad_mode == "zeros":
            inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
            rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
        else:
            rows, cols = _reflect(rows, h), _reflect(cols, w)
        # One advanced-indexing gather: [B, H, W, C], which permutes to a channels_last NCHW view.
        batch = images[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        x = self.normalized(batch)
        if inside is not None:
            x = x * inside[:, None].to(x.dtype)  # zero padding in normalised units
        return x

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan(epoch)
        order, offsets, flips = (t.to(self.device) for t in (plan.order, plan.offsets, plan.flips))
        for step in range(start_step, len(self)):
            sl = self.shard(step)
            idx = order[sl]
            if self.crop_pad or self.flip:
                x = self._gather(idx, offsets[sl], flips[sl])
            else:
                x = self.normalized(self.data.images[idx])
            yield self.formatted(x), self.data.labels[idx]
