"""What the training loop needs to know about a built network: gates, Dirac layers,
highway transform biases, which parameters get weight decay, and initialisation."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from archlang.train.recipes import Recipe

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def _layer_types() -> tuple[type, type, type]:
    from archlang.layers.dirac import DiracConv2d
    from archlang.layers.gate import ResidualGate
    from archlang.layers.highway import Highway

    return ResidualGate, DiracConv2d, Highway


def gates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    gate_type = _layer_types()[0]
    return [(name, m) for name, m in model.named_modules() if isinstance(m, gate_type)]


def dirac_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    dirac_type = _layer_types()[1]
    return [(name, m) for name, m in model.named_modules() if isinstance(m, dirac_type)]


def gate_values(model: nn.Module) -> dict[str, float]:
    """k of every gate, the value the Gated ResNet paper tabulates (the gate is relu(k))."""
    return {name or "gate": float(m.k.detach()) for name, m in gates(model)}


def dirac_values(model: nn.Module) -> dict[str, float]:
    return {name or "dirac": float(m.a.detach()) for name, m in dirac_layers(model)}


def decay_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Split parameters into weight-decay and no-decay groups as the recipe says."""
    _, dirac_type, _ = _layer_types()
    special: dict[int, bool] = {}
    for _, m in gates(model):
        special[id(m.k)] = recipe.k_decay
    for _, m in model.named_modules():
        if isinstance(m, dirac_type):
            special[id(m.a)] = recipe.dirac_decay
            special[id(m.b)] = recipe.dirac_decay
        elif isinstance(m, _NORM_TYPES):
            for p in m.parameters(recurse=False):
                special[id(p)] = recipe.bn_decay
        elif isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.bias is not None:
            special[id(m.bias)] = recipe.bias_decay
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if special.get(id(p), True) and recipe.weight_decay > 0 else no_decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": recipe.weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _init_weight(weight: torch.Tensor, kind: str) -> None:
    if kind == "kaiming_normal":
        nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")
    elif kind == "kaiming_normal_fan_out":
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
    elif kind == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif kind == "caffe_xavier":
        # Caffe's "xavier" filler: U(-a, a) with a = sqrt(3 / fan_in).
        fan_in = weight[0].numel()
        bound = math.sqrt(3.0 / fan_in)
        nn.init.uniform_(weight, -bound, bound)
    else:
        raise ValueError(f"unknown init {kind}")


def apply_init(model: nn.Module, recipe: Recipe) -> None:
    """Initialise convs/linears per the recipe, leaving layers that own their init alone."""
    _, dirac_type, highway_type = _layer_types()
    own_init: set[int] = set()  # Dirac layers (a, b, W init) and everything inside them
    keep_bias: set[int] = set()  # highway transform gates: their negative bias is the design
    for m in model.modules():
        if isinstance(m, dirac_type):
            own_init.update(id(sub) for sub in m.modules())
        if isinstance(m, highway_type):
            keep_bias.add(id(m.t))
    for m in model.modules():
        if id(m) in own_init:
            continue
        kind = recipe.conv_init if isinstance(m, nn.modules.conv._ConvNd) else recipe.linear_init if isinstance(m, nn.Linear) else None
        if kind is not None and kind != "default":
            _init_weight(m.weight.data, kind)
            if m.bias is not None and id(m) not in keep_bias:
                nn.init.zeros_(m.bias)
        if recipe.bn_momentum is not None and isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = recipe.bn_momentum


def build_optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    groups = decay_groups(model, recipe)
    fast: dict[str, Any] = {}
    if recipe.optimizer in ("sgd", "adam"):
        # Fused kernels: one launch for all parameters (10-40% faster on 100-layer FC nets).
        fast = {"fused": True} if recipe.fused is not False else {"foreach": False}
    elif recipe.fused is not False and device.type == "cpu":
        # torch has no fused NAdam: run its own NAdam on one flat tensor per group instead. CPU only,
        # where it was measured faster; on CUDA the foreach kernels are fast and the flat views
        # would drop the parameters' channels_last layout.
        from archlang.train.flat import flat_optimizer

        return flat_optimizer(torch.optim.NAdam, groups, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps,
                              momentum_decay=0.004)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, dampening=recipe.dampening,
                               nesterov=recipe.nesterov, **fast)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps, **fast)
    # Keras' Nadam (the Gated ResNet papers' optimizer) with its schedule_decay 0.004.
    return torch.optim.NAdam(groups, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps, momentum_decay=0.004, **fast)
