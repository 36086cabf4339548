"""ImageFolder trees and zips of them, decoded once into uint8 tensors and cached.

Memory is bounded before anything is decoded: each file is read alone (never the whole zip),
every image's header is checked against the expected (or first) image size before its pixels
are decoded, the total [N, C, H, W] is checked against a budget, and pixels go straight into
one preallocated tensor (no list of arrays, no stacked or permuted copy).
"""

from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from archlang.errors import ArchlangError, shorten
from archlang.train.data import cache
from archlang.train.data.folders import Entry, Files, open_files, size_text, split_entries
from archlang.train.data.types import FolderData, Split, bomb_message

# Without an expected size, one image of an in-memory dataset is at most this (a larger one
# belongs to a streamed dataset, or is a decompression bomb).
MAX_PIXELS = 4096 * 4096
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P;L")
LAYOUT_HINT = "expected train/<class>/*.jpg and test/<class>/*.jpg"


def memory_budget() -> int:
    """Bytes the decoded images may take: $ARCHLANG_DATA_MEMORY, else half the machine's memory."""
    given = os.environ.get("ARCHLANG_DATA_MEMORY")
    if given and given.isdigit():
        return int(given)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _open(data: bytes, where: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise ArchlangError(bomb_message(), path=where, hint="remove the file; it is not an image of this dataset") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ArchlangError(f"corrupted image ({shorten(str(exc), 200)})", path=where,
                            hint="re-extract or re-download the dataset") from None


class _Shape:
    """The [C, H, W] every image must have: the expected one, else the first image's."""

    def __init__(self, files: Files, first: Entry, expect: tuple[int, ...] | None) -> None:
        where = files.place(first.name)
        with _open(files.read(first.name), where) as img:
            w, h, gray = img.width, img.height, img.mode in GRAY_MODES
        if expect is None:
            self._check_pixels(w, h, where)
            self.c, self.h, self.w, self.origin = (1 if gray else 3), h, w, "the first image's size"
            return
        self.c, self.h, self.w = (int(v) for v in expect)
        self.origin = "the network's input"
        if self.c == 3 and gray:
            raise ArchlangError("the images are grayscale but the network takes 3 channels", path=where,
                                hint="convert the images to RGB, or write input(1, H, W) in the spec")
        self.check(w, h, not gray, where)

    @staticmethod
    def _check_pixels(w: int, h: int, where: str) -> None:
        if w * h > MAX_PIXELS:
            raise ArchlangError(f"image is {w}x{h} pixels, over the limit of {MAX_PIXELS:,} pixels for an "
                                "in-memory dataset", path=where,
                                hint="resize the images, or use dataset imagenet (read image by image)")

    def check(self, w: int, h: int, color: bool, where: str) -> None:
        if (h, w) != (self.h, self.w):
            raise ArchlangError(f"image is {w}x{h} pixels, expected {self.w}x{self.h} ({self.origin})", path=where,
                                hint="an ImageFolder dataset held in memory has images of one size, the network's")
        if color and self.c == 1:
            raise ArchlangError("a color image among grayscale images (or in a dataset for a 1-channel network)",
                                path=where, hint="convert the images to grayscale, or write input(3, H, W)")


def _decode_into(out: np.ndarray, i: int, files: Files, entry: Entry, shape: _Shape) -> None:
    where = files.place(entry.name)
    with _open(files.read(entry.name), where) as img:
        shape.check(img.width, img.height, img.mode not in GRAY_MODES, where)
        try:
            arr = np.asarray(img.convert("L" if shape.c == 1 else "RGB"))
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged pixel data
            raise ArchlangError(f"corrupted image ({shorten(str(exc), 200)})", path=where,
                                hint="re-extract or re-download the dataset") from None
    out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _decode_all(entries: list[Entry], files: Files, shape: _Shape) -> torch.Tensor:
    need = len(entries) * shape.c * shape.h * shape.w
    if need > memory_budget():
        raise ArchlangError(f"{len(entries):,} images of {shape.c}x{shape.h}x{shape.w} need {size_text(need)} "
                            f"decoded, over the budget of {size_text(memory_budget())}", path=files.where,
                            hint="set ARCHLANG_DATA_MEMORY (bytes) to allow more, or use a smaller dataset")
    out = np.empty((len(entries), shape.c, shape.h, shape.w), dtype=np.uint8)
    # PIL releases the GIL while decoding: threads use every core. Chunks keep the task count small.
    chunks = [range(s, min(s + 256, len(entries))) for s in range(0, len(entries), 256)]
    pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
    try:
        for _ in pool.map(lambda r: [_decode_into(out, i, files, entries[i], shape) for i in r], chunks):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return torch.from_numpy(out)


def _decode_tree(entries: list[Entry], files: Files, expect: tuple[int, ...] | None) -> FolderData:
    classes = sorted({e.label for e in entries if e.split == "train"})
    index = {c: i for i, c in enumerate(classes)}
    chosen = {s: [e for e in entries if e.split == s] for s in ("train", "test")}
    for split, items in chosen.items():
        if not items:
            raise ArchlangError(f"no images under {split}/<class>/ in the ImageFolder data", path=files.where,
                                hint=LAYOUT_HINT)
    unknown = sorted({e.label for e in chosen["test"]} - set(index))
    if unknown:
        raise ArchlangError(f"test classes {shorten(str(unknown), 200)} do not exist in train/", path=files.where,
                            hint="the test split must use the training split's class folders")
    # ImageFolder order is class by class, so "the first N images" (--subset) would be one class.
    # A fixed permutation (the same on every machine) mixes them, like the official binary files;
    # applied to the file list, it costs no copy of the decoded images.
    order = torch.randperm(len(chosen["train"]), generator=torch.Generator().manual_seed(0)).tolist()
    chosen["train"] = [chosen["train"][i] for i in order]
    shape = _Shape(files, chosen["train"][0], expect)
    splits = {s: Split(_decode_all(items, files, shape), torch.tensor([index[e.label] for e in items]))
              for s, items in chosen.items()}
    return FolderData(splits["train"], splits["test"], classes)


def load_imagefolder(path: Path, cache_dir: Path | None = None,
                     expect: tuple[int, ...] | None = None) -> FolderData:
    """An ImageFolder tree or a zip of one, decoded once and cached as uint8 safetensors.

    `expect` is the [C, H, W] the network takes, when known: images of another size are
    refused from their headers, before a pixel is decoded.
    """
    if not path.exists():
        raise ArchlangError("ImageFolder data not found", path=str(path),
                            hint="expected a folder or a .zip with train/<class>/*.jpg and test/<class>/*.jpg")
    cache_file = cache.cache_path(path, cache_dir, expect)
    cached = cache.load(cache_file)
    if cached is not None:
        return cached
    files = open_files(path)
    try:
        entries = split_entries(files.names(), files.where)
        if not entries:
            raise ArchlangError("no images found in ImageFolder layout", path=str(path), hint=LAYOUT_HINT)
        data = _decode_tree(entries, files, expect)
    finally:
        getattr(files, "close", lambda: None)()
    cache.save(cache_file, data)
    return data
