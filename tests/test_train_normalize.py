"""Whole-image normalisations (docs/recipes.md 3.4): per-pixel mean, GCN, GCN + ZCA, on tiny synthetic sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archlang.train.data import BatchLoader, Dataset, Split, statistics, whitening
from archlang.train.data.normalize import cached_zca, gcn
from archlang.train.recipes import Recipe


def _split(n: int = 40, shape: tuple[int, ...] = (1, 4, 4), seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g), torch.zeros(n, dtype=torch.long))


def _data(train: Split) -> Dataset:
    return Dataset("cifar10", train, train.first(4), 10, None, None, "synthetic")


def _recipe(**kw: object) -> Recipe:
    return Recipe.model_validate({"dataset": "cifar10", "optimizer": "sgd", "lr": 0.1, "epochs": 1, **kw})


def _loader(recipe: Recipe, data: Dataset, split: Split, **kw: object) -> BatchLoader:
    mean, std = statistics(recipe, data)
    args = {"batch_size": 8, "mean": mean, "std": std, "normalize": recipe.normalize, "device": torch.device("cpu"),
            "train": False, "gcn_scale": recipe.gcn_scale}
    if "whiten" not in kw:
        args["whiten"] = whitening(recipe, data, kw.pop("cache", None))
    return BatchLoader(split, **{**args, **kw})


def _all(loader: BatchLoader, epoch: int = 0) -> torch.Tensor:
    return torch.cat([x for x, _ in loader.batches(epoch)])


def _pylearn2_gcn(x: np.ndarray, scale: float) -> np.ndarray:
    """pylearn2 global_contrast_normalize (subtract_mean, use_std=False, sqrt_bias=0, min_divisor=1e-8)."""
    x = x - x.mean(axis=1)[:, None]
    normalizers = np.sqrt((x**2).sum(axis=1)) / scale
    normalizers[normalizers < 1e-8] = 1.0
    return x / normalizers[:, None]


def test_gcn_matches_pylearn2_and_leaves_a_constant_image_zero() -> None:
    images = _split(6).images.float()
    images[0] = 7.0
    want = _pylearn2_gcn(images.flatten(1).double().numpy(), 55.0)
    got = gcn(images, 55.0).flatten(1).double().numpy()
    assert np.allclose(got, want, atol=1e-4) and not got[0].any()
    assert np.allclose(np.linalg.norm(got[1:], axis=1), 55.0, rtol=1e-5)


def test_pixel_mean_subtracts_the_training_mean_image() -> None:
    train = _split()
    loader = _loader(_recipe(normalize="pixel_mean"), _data(train), train)
    x = _all(loader)
    assert torch.allclose(x, train.images.float() / 255 - train.images.double().mean(0).float() / 255, atol=1e-6)
    assert x.mean(0).abs().max() < 1e-6


def test_gcn_then_the_gcn_training_mean_image() -> None:
    train = _split()
    x = _all(_loader(_recipe(normalize="gcn", gcn_scale=10.0), _data(train), train))
    g = _pylearn2_gcn(train.images.flatten(1).double().numpy(), 10.0)
    assert np.allclose(x.flatten(1).numpy(), g - g.mean(axis=0), atol=1e-4)


def test_gcn_zca_matches_numpy_and_whitens(tmp_path: Path) -> None:
    train = _split(200)
    recipe = _recipe(normalize="gcn_zca", zca_bias=1e-6)
    x = _all(_loader(recipe, _data(train), train, cache=tmp_path)).flatten(1).double().numpy()
    g = _pylearn2_gcn(train.images.flatten(1).double().numpy(), 55.0)
    centred = g - g.mean(axis=0)
    eigenvalues, vectors = np.linalg.eigh(centred.T @ centred / len(g))
    want = centred @ (vectors / np.sqrt(np.clip(eigenvalues, 0, None) + 1e-6)) @ vectors.T
    assert np.allclose(x, want, atol=1e-2)
    # GCN leaves 15 degrees of freedom of 16 pixels: the whitened covariance is the identity on them
    cov = np.linalg.eigvalsh(x.T @ x / len(x))
    assert np.allclose(cov[1:], 1.0, atol=1e-2) and abs(cov[0]) < 1e-2


def test_whole_image_modes_normalise_before_cropping() -> None:
    train = _split(12, (3, 6, 6))
    recipe = _recipe(normalize="pixel_mean")
    full = _all(_loader(recipe, _data(train), train))
    loader = _loader(recipe, _data(train), train, train=True, crop_pad=2, flip=True, seed=1)
    plan = loader.plan(3)
    padded = F.pad(full, (2, 2, 2, 2), mode="reflect")
    got = _all(loader, 3)
    for i, idx in enumerate(plan.order.tolist()):
        oy, ox = plan.offsets[i].tolist()
        want = padded[idx, :, oy:oy + 6, ox:ox + 6]
        assert torch.allclose(got[i], want.flip(-1) if plan.flips[i] else want, atol=1e-6)


def test_zca_is_fitted_once_and_a_damaged_cache_is_refitted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images = _split(50).images
    first = cached_zca(images, 55.0, 0.1, tmp_path)
    (cache,) = tmp_path.glob("zca-*.safetensors")
    again = cached_zca(images, 55.0, 0.1, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert len(list(tmp_path.glob("zca-*"))) == 1 and capsys.readouterr().err == ""
    cache.write_bytes(b"not a tensor file")
    refit = cached_zca(images, 55.0, 0.1, tmp_path)
    assert torch.equal(refit[1], first[1])
    assert capsys.readouterr().err == f"notice: ZCA cache {cache} is damaged; refitting it\n"


def test_whitening_is_only_for_gcn_zca() -> None:
    train = _split()
    assert whitening(_recipe(normalize="gcn"), _data(train)) is None
    with pytest.raises(ValueError, match="normalize gcn_zca, and it alone, takes the fitted whitening"):
        _loader(_recipe(normalize="gcn_zca"), _data(train), train, whiten=None)
