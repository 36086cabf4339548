"""Whole-image normalisations: per-pixel mean, global contrast normalisation, ZCA whitening.

The per-channel modes fold into one multiply-add (batching.Batching); these need every pixel of
an image, so a batch is normalised whole and cropped afterwards (as Caffe subtracts its
`mean_file` from the uncropped image, and the papers' GCN/ZCA preprocess the stored set).
Statistics are fitted on the training split in chunks of float32: no float copy of the set.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from archlang.train.data.types import default_cache_dir

# pylearn2 global_contrast_normalize: a divisor below this (a constant image) is replaced by 1.
MIN_DIVISOR = 1e-8
# Images per chunk while fitting: 1024 CIFAR images are 12.6 MB of float32.
CHUNK_VALUES = 1024 * 3072


def gcn(x: torch.Tensor, scale: float) -> torch.Tensor:
    """pylearn2 `global_contrast_normalize(X, scale, subtract_mean=True, use_std=False, sqrt_bias=0)`
    of a float batch [B, ...]: each image minus its mean, scaled to L2 norm `scale`."""
    flat = x.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    divisor = centred.norm(dim=1, keepdim=True) / scale
    divisor = torch.where(divisor < MIN_DIVISOR, torch.ones_like(divisor), divisor)
    return (centred / divisor).view_as(x)


def _chunks(images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor],
            device: torch.device | None = None) -> Iterator[torch.Tensor]:
    per_chunk = max(1, CHUNK_VALUES // max(1, images[0].numel()))
    for chunk in images.split(per_chunk):
        yield transform(chunk.to(device or chunk.device, torch.float32)).flatten(1)


def pixel_mean(images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Mean image [C, H, W] of transform(uint8 images), summed per chunk in float64."""
    total = torch.zeros(images[0].numel(), dtype=torch.float64)
    for x in _chunks(images, transform):
        total += x.sum(dim=0, dtype=torch.float64)
    return (total / max(1, images.shape[0])).float().view(images.shape[1:])


def fit_zca(images: torch.Tensor, scale: float, bias: float,
            device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """pylearn2 `ZCA(filter_bias=bias)` fitted on the GCN'd images: (mean [D], W [D, D]), x -> (x - mean) W.

    W = U diag(1 / sqrt(lambda + bias)) U^T of the covariance (divided by N, all components kept).
    Memory: D x D float64 three times over (CIFAR: 3 x 75 MB) plus one chunk. CIFAR-10's 50,000
    images are 0.94 TFLOP of products (measured: 295 s, 1.08 GB peak RSS, on 2 shared CPU cores), so the trainer
    fits on its device (`device`) and the result is cached.
    """
    d = images[0].numel()
    total = torch.zeros(d, dtype=torch.float64, device=device)
    gram = torch.zeros(d, d, dtype=torch.float64, device=device)
    for x in _chunks(images, lambda c: gcn(c, scale), device):
        total += x.sum(dim=0, dtype=torch.float64)
        gram += (x.T @ x).double()  # float32 product per chunk, accumulated in float64
    n = max(1, images.shape[0])
    mean = total / n
    gram /= n
    gram -= torch.outer(mean, mean)
    eigenvalues, vectors = torch.linalg.eigh(gram)
    del gram
    whiten = (vectors * (eigenvalues.clamp_min(0) + bias).rsqrt()) @ vectors.T
    return mean.float().cpu(), whiten.float().cpu()


def _zca_cache_path(images: torch.Tensor, scale: float, bias: float, cache_dir: Path | None) -> Path:
    h = hashlib.sha256(f"zca|{tuple(images.shape)}|{scale!r}|{bias!r}|".encode())
    h.update(images.contiguous().view(-1).numpy().data)
    return (cache_dir or default_cache_dir()) / f"zca-{h.hexdigest()[:24]}.safetensors"


def cached_zca(images: torch.Tensor, scale: float, bias: float, cache_dir: Path | None = None,
               device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fit_zca, fitted once per training split and parameters and cached (safetensors, no code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from archlang.errors import ArchlangError
    from archlang.fileio import atomic_path

    path = _zca_cache_path(images, scale, bias, cache_dir)
    d = images[0].numel()
    if path.is_file():
        try:
            t = load_file(str(path))
            if t["mean"].shape == (d,) and t["whiten"].shape == (d, d) and bool(t["whiten"].isfinite().all()):
                return t["mean"], t["whiten"]
        except (SafetensorError, OSError, KeyError, RuntimeError):
            pass
        print(f"notice: ZCA cache {path} is damaged; refitting it", file=sys.stderr)
    mean, whiten = fit_zca(images, scale, bias, device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, "ZCA cache") as tmp:
            save_file({"mean": mean, "whiten": whiten.contiguous()}, str(tmp))
    except (OSError, ArchlangError):
        pass  # a cache is an optimisation; a read-only home must not stop training
    return mean, whiten
