"""The decoded-ImageFolder cache: uint8 safetensors with a checksum, never trusted unchecked.

A cache that fails any check (unreadable, wrong tensors, dtype, shape, labels, checksum) is
rebuilt with a one-line notice: a tampered cache once crashed training in cross-entropy.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from archlang.train.data.types import FolderData, Split, default_cache_dir

VERSION = "v3"  # v3: a checksum in the metadata


def cache_path(path: Path, cache_dir: Path | None, expect: tuple[int, ...] | None) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{expect}"
    return (cache_dir or default_cache_dir()) / f"{path.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}-{VERSION}.safetensors"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).reshape(-1).numpy().data if t.numel() else b"")
    return h.hexdigest()


def _tensors(data: FolderData) -> dict[str, torch.Tensor]:
    return {"train_images": data.train.images, "train_labels": data.train.labels,
            "test_images": data.test.images, "test_labels": data.test.labels}


def _why_not(t: dict[str, torch.Tensor], meta: dict[str, str], classes: list) -> str | None:
    """What is wrong with a cache's contents, or None."""
    if sorted(t) != ["test_images", "test_labels", "train_images", "train_labels"]:
        return "unexpected tensors"
    for s in ("train", "test"):
        images, labels = t[f"{s}_images"], t[f"{s}_labels"]
        if images.dtype != torch.uint8 or images.dim() != 4 or labels.dtype != torch.int64 or labels.dim() != 1:
            return "wrong tensor types"
        if images.shape[0] != labels.shape[0] or images.shape[1:] != t["train_images"].shape[1:]:
            return "inconsistent shapes"
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            return "labels out of range"
    if meta.get("digest") != _digest(t):
        return "checksum mismatch"
    return None


def load(cache: Path) -> FolderData | None:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if not cache.is_file():
        return None
    try:
        with safe_open(str(cache), framework="pt") as f:
            meta = dict(f.metadata() or {})
        classes = json.loads(meta.get("classes", "null"))
        t = load_file(str(cache))
        problem = "bad class list" if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)) \
            else _why_not(t, meta, classes)
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as exc:
        problem = f"unreadable: {type(exc).__name__}"
    if problem is not None:
        print(f"notice: decoded cache {cache} is damaged ({problem}); rebuilding it", file=sys.stderr)
        return None
    return FolderData(Split(t["train_images"], t["train_labels"]), Split(t["test_images"], t["test_labels"]), classes)


def save(cache: Path, data: FolderData) -> None:
    from safetensors.torch import save_file

    from archlang.errors import ArchlangError
    from archlang.fileio import atomic_path

    tensors = {k: v.contiguous() for k, v in _tensors(data).items()}
    meta = {"classes": json.dumps(data.classes), "digest": _digest(tensors)}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, "decoded cache") as tmp:  # streamed: no second copy in memory
            save_file(tensors, str(tmp), metadata=meta)
    except (OSError, ArchlangError):
        pass  # a cache is an optimisation; a read-only home must not stop training
