"""The new recipe fields through `archlang train` on a tiny synthetic MNIST: momentum reset with exact
resume, and ZCA fitted once per training split."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

import archlang
from archlang.train import TrainOptions, model_tools, train
from archlang.train.recipes import build_recipe

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


def test_momentum_reset_starts_each_buffer_anew_as_a_new_optimizer_would() -> None:
    """The buffers directly: after reset_momentum the next step is a fresh SGD optimizer's step."""
    recipe = build_recipe("gated-mnist", overrides=RESET).recipe
    assert [model_tools.resets_momentum(recipe, e, s) for e, s in ((0, 0), (1, 0), (1, 1))] == [False, True, False]
    assert not model_tools.resets_momentum(recipe.model_copy(update={"momentum_reset": False}), 1, 0)
    torch.manual_seed(0)
    compiled = archlang.compile_spec(SPEC)
    model = compiled.build()
    optimizer = model_tools.build_optimizer(model, recipe, torch.device("cpu"))
    x, y = torch.randn(2, 16, *compiled.input_shape), torch.randint(0, 10, (2, 16))

    def step(net: torch.nn.Module, opt: torch.optim.Optimizer, i: int) -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
        opt.step()

    step(model, optimizer, 0)
    assert all(s["momentum_buffer"].abs().sum() > 0 for s in optimizer.state.values())
    model_tools.reset_momentum(optimizer)
    assert not any("momentum_buffer" in s for s in optimizer.state.values())
    fresh_model = copy.deepcopy(model)
    fresh = model_tools.build_optimizer(fresh_model, recipe, torch.device("cpu"))
    step(model, optimizer, 1)
    step(fresh_model, fresh, 1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh_model.state_dict().values()))


def test_momentum_reset_acts_once_and_resumes_exactly(tiny_mnist: Path, tmp_path: Path, monkeypatch) -> None:
    resets: list[str] = []
    real = model_tools.reset_momentum
    monkeypatch.setattr(model_tools, "reset_momentum", lambda opt: resets.append("reset") or real(opt))
    straight = _run(tiny_mnist, tmp_path, "straight", RESET)
    assert len(resets) == 1  # at step 0 of epoch 1, the milestone
    # stopped inside epoch 1: its checkpoint holds the reset buffers; no second reset
    inside = _run(tiny_mnist, tmp_path, "inside", RESET, max_steps=5)
    assert len(resets) == 2
    assert _same(straight, _run(tiny_mnist, tmp_path, "inside", RESET, resume=inside)) and len(resets) == 2


def test_gcn_zca_trains_and_fits_its_whitening_once(tiny_mnist: Path, tmp_path: Path) -> None:
    recipe = {"normalize": "gcn_zca", "epochs": 1, "batch_size": 16}
    cache = tmp_path / "cache"
    folder = _run(tiny_mnist, tmp_path, "zca", recipe, cache_dir=cache)
    assert json.loads((folder / "summary.json").read_text())["status"] == "finished"
    assert len(list(cache.glob("zca-*.safetensors"))) == 1
    resolved = (folder / "recipe.resolved.yaml").read_text()
    assert "normalize: gcn_zca" in resolved and "zca_bias" not in resolved  # at its default: left out
