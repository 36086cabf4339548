"""Init overrides and Caffe's per-group multipliers (docs/recipes.md 3.1-3.2) on tiny built networks."""

from __future__ import annotations

import math

import torch
from torch import nn

import archlang
from archlang.train import model_tools
from archlang.train.recipes import Recipe

CONV_NET = "seq(input(3, 8, 8), conv(4), bn, relu, conv(4), bn, relu, global_avgpool, linear(16), relu, linear(10))"


def _recipe(**kw: object) -> Recipe:
    base = {"dataset": "cifar10", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3, "epochs": 1}
    return Recipe.model_validate({**base, **kw})


def _model(recipe: Recipe, spec: str = CONV_NET, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = archlang.compile_spec(spec, "t.arch").build()
    model_tools.apply_init(model, recipe)
    return model


def _layers(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def test_defaults_initialise_as_before_and_overrides_touch_only_their_layer() -> None:
    plain = _model(_recipe())
    again = _model(_recipe(bn_eps=1e-5))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), again.state_dict().values(), strict=True))
    changed = _model(_recipe(classifier_init="normal", classifier_std=0.05, stem_init="normal", stem_std=1.0))
    convs, linears = _layers(changed, nn.Conv2d), _layers(changed, nn.Linear)
    assert abs(float(convs[0].weight.detach().std()) - 1.0) < 0.25
    assert abs(float(linears[-1].weight.detach().std()) - 0.05) < 0.01 and not linears[-1].bias.any()
    # the layers between keep the run's init
    assert torch.equal(convs[1].weight, _layers(plain, nn.Conv2d)[1].weight)
    assert torch.equal(linears[0].weight, _layers(plain, nn.Linear)[0].weight)


def test_torch7_init_is_uniform_one_over_sqrt_fan_in_with_zero_bias() -> None:
    model = _model(_recipe(linear_init="torch7", conv_init="torch7"))
    for m in _layers(model, nn.Linear) + _layers(model, nn.Conv2d):
        bound = 1 / math.sqrt(m.weight[0].numel())
        top = float(m.weight.detach().abs().max())
        assert 0.8 * bound < top <= bound
        assert m.bias is None or not m.bias.any()


def test_bn_weight_uniform_and_eps() -> None:
    model = _model(_recipe(bn_weight_init="uniform", bn_eps=1e-3))
    bns = _layers(model, nn.BatchNorm2d)
    weights = torch.cat([m.weight.detach() for m in bns])
    assert len(bns) == 2 and all(m.eps == 1e-3 for m in bns) and not any(m.bias.any() for m in bns)
    assert float(weights.min()) >= 0 and float(weights.max()) <= 1 and len(set(weights.tolist())) == len(weights)
    assert all(m.eps == 1e-5 and bool((m.weight == 1).all()) for m in _layers(_model(_recipe()), nn.BatchNorm2d))


def _group_of(groups: list[dict], p: torch.Tensor) -> dict:
    return next(g for g in groups if any(q is p for q in g["params"]))


def test_groups_default_to_decay_and_no_decay_without_lr() -> None:
    model = _model(_recipe(bias_decay=False, bn_decay=False))
    groups = model_tools.decay_groups(model, _recipe(bias_decay=False, bn_decay=False))
    assert [g["weight_decay"] for g in groups] == [1e-3, 0.0] and all("lr" not in g for g in groups)


def test_caffe_multipliers_give_each_role_its_lr_and_decay() -> None:
    recipe = _recipe(bias_decay=False, bias_lr_mult=2.0, classifier_decay_mult=10.0, classifier_lr_mult=3.0)
    model = _model(recipe)
    groups = model_tools.decay_groups(model, recipe)
    head, conv = _layers(model, nn.Linear)[-1], _layers(model, nn.Conv2d)[0]
    assert (_group_of(groups, head.weight)["lr"], _group_of(groups, head.weight)["weight_decay"]) == (0.1 * 3, 1e-3 * 10)
    assert (_group_of(groups, head.bias)["lr"], _group_of(groups, head.bias)["weight_decay"]) == (0.1 * 2, 0.0)
    assert "lr" not in _group_of(groups, conv.weight) and _group_of(groups, conv.weight)["weight_decay"] == 1e-3
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # one SGD step: each parameter moves by its group's lr x (grad + decay x weight)
    opt = model_tools.build_optimizer(model, recipe, torch.device("cpu"))
    before = head.weight.detach().clone(), head.bias.detach().clone()
    model(torch.randn(4, 3, 8, 8)).square().sum().backward()
    grads = head.weight.grad.clone(), head.bias.grad.clone()
    opt.step()
    assert torch.allclose(head.weight, before[0] - 0.3 * (grads[0] + 1e-2 * before[0]), atol=1e-6)
    assert torch.allclose(head.bias, before[1] - 0.2 * grads[1], atol=1e-6)


def test_highway_biases_take_the_bias_multiplier() -> None:
    recipe = _recipe(bias_lr_mult=2.0)
    model = _model(recipe, "highway_cnn(variant=mnist, width=4)")
    groups = model_tools.decay_groups(model, recipe)
    highway = next(m for m in model.modules() if type(m).__name__ == "Highway")
    assert _group_of(groups, highway.t.bias)["lr"] == _group_of(groups, highway.h.bias)["lr"] == 0.2
    assert float(highway.t.bias.detach().mean()) == -2.0  # the transform bias keeps its own init


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()


def test_momentum_reset_steps_as_a_new_optimizer_would() -> None:
    recipe = _recipe(schedule="multistep", milestones=[2, 4], momentum_reset=True, nesterov=True)
    model = _model(recipe)
    x = torch.randn(4, 3, 8, 8)
    opt = model_tools.build_optimizer(model, recipe, torch.device("cpu"))
    _step(model, opt, x)
    twin = _model(recipe)
    twin.load_state_dict(model.state_dict())
    model_tools.reset_momentum(opt)
    _step(model, opt, x)
    _step(twin, model_tools.build_optimizer(twin, recipe, torch.device("cpu")), x)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))


def test_momentum_resets_at_milestone_epochs_entered_at_their_first_step() -> None:
    recipe = _recipe(schedule="multistep", milestones=[2, 4], momentum_reset=True)
    assert [e for e in range(6) if model_tools.resets_momentum(recipe, e, 0)] == [2, 4]
    assert not model_tools.resets_momentum(recipe, 2, 5)  # resumed inside: the checkpoint holds the reset
    assert not model_tools.resets_momentum(_recipe(schedule="multistep", milestones=[2]), 2, 0)
