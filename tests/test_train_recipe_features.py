"""The new recipe fields through `archlang train` on a tiny synthetic MNIST: momentum reset with exact
resume, and ZCA fitted once per training split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

import archlang
from archlang.train import TrainOptions, train

SPEC = "mlp(depth=4, width=24, block=gated(residual))"
# 64 training images in batches of 16: 4 steps per epoch, the lr drops (and momentum resets) at epoch 1.
RESET = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "schedule": "multistep", "milestones": [1],
         "momentum_reset": True, "epochs": 2, "batch_size": 16}


def _run(data: Path, out: Path, name: str, overrides: dict[str, Any], resume: Path | None = None,
         **options: Any) -> Path:
    opts = TrainOptions(progress=False, log=lambda message: None, **options)
    return train(archlang.compile_spec(SPEC), overrides=overrides, out=out, name=name, resume=resume, data_dir=data,
                 options=opts)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _same(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_momentum_reset_acts_once_and_resumes_exactly(tiny_mnist: Path, tmp_path: Path) -> None:
    straight = _run(tiny_mnist, tmp_path, "straight", RESET)
    kept = _run(tiny_mnist, tmp_path, "kept", {**RESET, "momentum_reset": False})
    assert not _same(straight, kept)
    # stopped at the epoch boundary: the resumed run resets at the start of epoch 1
    boundary = _run(tiny_mnist, tmp_path, "boundary", RESET, max_steps=4)
    assert _same(straight, _run(tiny_mnist, tmp_path, "boundary", RESET, resume=boundary))
    # stopped inside epoch 1: its checkpoint holds the reset buffers; no second reset
    inside = _run(tiny_mnist, tmp_path, "inside", RESET, max_steps=5)
    assert _same(straight, _run(tiny_mnist, tmp_path, "inside", RESET, resume=inside))


def test_gcn_zca_trains_and_fits_its_whitening_once(tiny_mnist: Path, tmp_path: Path) -> None:
    recipe = {"normalize": "gcn_zca", "epochs": 1, "batch_size": 16}
    cache = tmp_path / "cache"
    folder = _run(tiny_mnist, tmp_path, "zca", recipe, cache_dir=cache)
    assert json.loads((folder / "summary.json").read_text())["status"] == "finished"
    assert len(list(cache.glob("zca-*.safetensors"))) == 1
    resolved = (folder / "recipe.resolved.yaml").read_text()
    assert "normalize: gcn_zca" in resolved and "zca_bias" not in resolved  # at its default: left out
