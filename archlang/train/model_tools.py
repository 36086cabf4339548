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


def classifier(model: nn.Module) -> nn.Linear | None:
    """The layer producing the logits: the last nn.Linear in module order (every family ends with one)."""
    found = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            found = m
    return found


def stem(model: nn.Module) -> nn.Module | None:
    """The first convolution in module order."""
    return next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)


def _decays(model: nn.Module, recipe: Recipe) -> dict[int, bool]:
    """Parameters whose decay the recipe switches (gates, Dirac scalars, norms, biases); others decay."""
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
    return special


def _multipliers(model: nn.Module, recipe: Recipe) -> dict[int, tuple[float, float]]:
    """Caffe's (lr_mult, decay_mult) of the parameters that have them: biases, the classifier's weight."""
    mults: dict[int, tuple[float, float]] = {}
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.bias is not None:
            mults[id(m.bias)] = (recipe.bias_lr_mult, 1.0)
    head = classifier(model)
    if head is not None:
        mults[id(head.weight)] = (recipe.classifier_lr_mult, recipe.classifier_decay_mult)
    return mults


def parameter_settings(model: nn.Module, recipe: Recipe) -> dict[str, tuple[float, float]]:
    """Each trainable parameter's (lr multiplier, weight decay), by name: the recipe's rule, one home
    for the single trainer's optimizer groups and the grouped optimizer's per-copy settings."""
    decays, mults = _decays(model, recipe), _multipliers(model, recipe)
    settings: dict[str, tuple[float, float]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult, decay_mult = mults.get(id(p), (1.0, 1.0))
        settings[name] = (lr_mult, recipe.weight_decay * decay_mult if decays.get(id(p), True) else 0.0)
    return settings


def decay_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """One optimizer group per distinct (lr, weight decay): decaying groups first, as before the multipliers.

    Caffe's update v = m v + lr lr_mult (g + wd decay_mult w) is torch SGD's with the group's lr and
    weight_decay. A group's "lr" is set only where a multiplier makes it differ from recipe.lr.
    """
    params = dict(model.named_parameters())
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, setting in parameter_settings(model, recipe).items():
        groups.setdefault(setting, []).append(params[name])
    ordered = sorted(groups, key=lambda key: key[1] == 0.0)  # stable: first appearance within each kind
    out = []
    for lr_mult, decay in ordered:
        group: dict[str, Any] = {"params": groups[(lr_mult, decay)], "weight_decay": decay}
        if lr_mult != 1.0:
            group["lr"] = recipe.lr * lr_mult
        out.append(group)
    return out


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
    elif kind == "torch7":
        # torch7 nn.Linear:reset / SpatialConvolution:reset: U(-a, a) with a = 1 / sqrt(fan_in).
        bound = 1.0 / math.sqrt(weight[0].numel())
        nn.init.uniform_(weight, -bound, bound)
    else:
        raise ValueError(f"unknown init {kind}")


def apply_init(model: nn.Module, recipe: Recipe) -> None:
    """Initialise convs/linears per the recipe, leaving layers that own their init alone; then the
    recipe's overrides of the stem, the classifier and the batchnorm layers."""
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
    _apply_overrides(model, recipe, own_init)


def _init_layer(m: nn.Module, kind: str, std: float | None) -> None:
    """One layer's init as an override says: `normal` N(0, std) (Caffe's gaussian filler), else a kind; bias 0."""
    if kind == "default":
        m.reset_parameters()
        return
    if kind == "normal":
        nn.init.normal_(m.weight.data, 0.0, std)
    else:
        _init_weight(m.weight.data, kind)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _apply_overrides(model: nn.Module, recipe: Recipe, own_init: set[int]) -> None:
    first, last = stem(model), classifier(model)
    if recipe.stem_init is not None and first is not None and id(first) not in own_init:
        _init_layer(first, recipe.stem_init, recipe.stem_std)
    if recipe.classifier_init is not None and last is not None and id(last) not in own_init:
        _init_layer(last, recipe.classifier_init, recipe.classifier_std)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if recipe.bn_eps is not None:
                m.eps = recipe.bn_eps
            if recipe.bn_weight_init == "uniform" and m.affine:
                nn.init.uniform_(m.weight.data, 0.0, 1.0)  # torch7 BatchNormalization:reset
                nn.init.zeros_(m.bias.data)
    if recipe.gate_init == "glorot_uniform":
        # Keras' glorot_uniform on a scalar (or shape-(1,)) weight: get_fans' "no specific assumptions"
        # branch gives fan_in = fan_out = sqrt(1) = 1, so the bound is sqrt(6 / 2) = sqrt(3).
        for _, gate in gates(model):
            nn.init.uniform_(gate.k.data, -math.sqrt(3.0), math.sqrt(3.0))


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


def resets_momentum(recipe: Recipe, epoch: int, start_step: int) -> bool:
    """Whether `epoch`, entered at `start_step`, begins by dropping the momentum buffers.

    The reset belongs to step 0 of a milestone epoch: a checkpoint written later in that epoch
    already holds the reset buffers, so a run resumed inside it must not reset again.
    """
    return recipe.momentum_reset and start_step == 0 and epoch in recipe.milestone_epochs()


def reset_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Forget SGD's momentum: the next step starts each buffer from the gradient, as a new optimizer would
    ([dirac]/[port] create_optimizer at every lr drop, torch7's optimState replaced)."""
    for state in optimizer.state.values():
        state.pop("momentum_buffer", None)
