"""Squared Distance to Identity (Savarese et al., earlier version, sec. 2-3 and appendix).

For each layer that can degenerate into an identity map, TSDI is the summed squared distance
of its parameters at initialisation from the nearest identity-giving state:
  plain layer   W -> I (or the Dirac kernel for a conv), b -> 0     paper: 3n + 2   (He init)
  residual      W -> 0, b -> 0                                      paper: 2n + 2
  highway       W_t -> 0, b_t -> c                                  paper: (2 + (4 + c)^2) n + 2
  gated         k -> 0                                              paper: k_init^2
The expectation over the random initialisation is estimated by re-initialising the compiled
module several times, with the initialisation it really uses (or He's, as the paper assumes).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from archlang.compiler import Compiled
from archlang.layers.gate import GatedLayer
from archlang.layers.highway import Highway
from archlang.layers.residual import Residual

Affine = (nn.Linear, nn.Conv2d)


@dataclass
class SdiRow:
    path: str
    kind: str  # 'plain', 'residual', 'highway' or 'gated'
    n: int  # units or feature maps of the layer
    measured: float  # mean TSDI over the sampled initialisations
    spread: float  # std over the samples
    paper: float  # the paper's closed form for this kind and n
    formula: str


def _identity_like(layer: nn.Module) -> torch.Tensor:
    target = torch.zeros_like(layer.weight)
    if isinstance(layer, nn.Linear):
        target.copy_(torch.eye(*layer.weight.shape))
    else:
        nn.init.dirac_(target)
    return target


def _squares(layer: nn.Module, weight_target: torch.Tensor | float = 0.0, bias_target: float = 0.0) -> float:
    total = float(((layer.weight.detach() - weight_target) ** 2).sum())
    if layer.bias is not None:
        total += float(((layer.bias.detach() - bias_target) ** 2).sum())
    return total


def _is_square(layer: nn.Module) -> bool:
    return layer.weight.shape[0] == layer.weight.shape[1]


def _units(layer: nn.Module) -> int:
    return int(layer.weight.shape[0])


def _measure(model: nn.Module, c: float) -> list[tuple[str, str, int, float, float, str]]:
    """One sample: (path, kind, n, TSDI, paper value, formula) per degenerable layer, in network order."""
    rows = []
    inside: set[int] = set()
    for path, module in model.named_modules():
        if id(module) in inside:
            continue
        if isinstance(module, (Residual, GatedLayer)) and getattr(module, "gate", None) is not None:
            k = float(module.gate.k.detach())
            k_init = k
            rows.append((path, "gated", 1, k * k, k_init**2, "k_init^2"))
            inside.update(id(m) for m in module.modules())
        elif isinstance(module, Residual):
            for sub_path, layer in module.body.named_modules():
                if isinstance(layer, Affine):
                    n = _units(layer)
                    rows.append((f"{path}.body.{sub_path}", "residual", n, _squares(layer), 2 * n + 2, "2n + 2"))
            inside.update(id(m) for m in module.modules())
        elif isinstance(module, Highway):
            n = _units(module.t)
            rows.append((path, "highway", n, _squares(module.t, 0.0, c), (2 + (4 + c) ** 2) * n + 2,
                         "(2 + (4 + c)^2) n + 2"))
            inside.update(id(m) for m in module.modules())
        elif isinstance(module, Affine) and _is_square(module):
            n = _units(module)
            rows.append((path, "plain", n, _squares(module, _identity_like(module)), 3 * n + 2, "3n + 2"))
    return rows


def he_init(model: nn.Module) -> None:
    """The paper's assumption: weights and biases N(0, 2/n_in); highway T biases keep their constant."""
    t_biases = {id(m.t.bias) for m in model.modules() if isinstance(m, Highway)}
    for layer in model.modules():
        if isinstance(layer, Affine):
            fan_in = layer.weight[0].numel()
            std = math.sqrt(2.0 / fan_in)
            with torch.no_grad():
                layer.weight.normal_(0.0, std)
                if layer.bias is not None and id(layer.bias) not in t_biases:
                    layer.bias.normal_(0.0, std)


def sdi(compiled: Compiled, samples: int = 10, c: float = -4.0,
        init: Callable[[nn.Module], None] | None = None, seed: int = 0) -> list[SdiRow]:
    """TSDI per layer, averaged over `samples` fresh initialisations of the compiled module."""
    per_layer: list[list[float]] = []
    first: list[tuple[str, str, int, float, float, str]] = []
    for s in range(samples):
        torch.manual_seed(seed + s)
        model = compiled.build()
        if init is not None:
            init(model)
        rows = _measure(model, c)
        if s == 0:
            first = rows
            per_layer = [[] for _ in rows]
        for values, row in zip(per_layer, rows):
            values.append(row[3])
    return [SdiRow(path, kind, n, statistics.fmean(values), statistics.pstdev(values), paper, formula)
            for (path, kind, n, _, paper, formula), values in zip(first, per_layer)]
