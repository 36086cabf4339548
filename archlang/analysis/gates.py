"""Gate statistics of a network: Gated ResNet k per block (Table 2, Fig. 5/7), Dirac a and b per layer
(DiracNets Fig. 4), highway transform-gate bias and mean activity per layer (Highway Fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archlang.layers.dirac import DiracConv2d
from archlang.layers.gate import ResidualGate
from archlang.layers.highway import Highway


@dataclass
class GateRow:
    kind: str  # 'gate', 'dirac' or 'highway'
    layer: int  # 1-based, in network order, per kind
    path: str
    values: dict[str, float]


def gate_rows(model: nn.Module) -> list[GateRow]:
    rows: list[GateRow] = []
    counters = {"gate": 0, "dirac": 0, "highway": 0}
    for path, module in model.named_modules():
        if isinstance(module, ResidualGate):
            counters["gate"] += 1
            k = float(module.k.detach())
            rows.append(GateRow("gate", counters["gate"], path, {"k": k, "g(k)": max(k, 0.0)}))
        elif isinstance(module, DiracConv2d):
            counters["dirac"] += 1
            rows.append(GateRow("dirac", counters["dirac"], path,
                                {"a": float(module.a.detach()), "b": float(module.b.detach())}))
        elif isinstance(module, Highway):
            counters["highway"] += 1
            rows.append(GateRow("highway", counters["highway"], path,
                                {"bias": float(module.t.bias.detach().mean())}))
    return rows


@torch.no_grad()
def highway_activity(model: nn.Module, batches) -> dict[str, float]:
    """Mean transform-gate output T(x) per highway layer over the given inputs (Highway Fig. 2, column 2)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    hooks = []
    for path, module in model.named_modules():
        if isinstance(module, Highway):
            def record(mod: Highway, args, _out, path: str = path) -> None:
                t = mod.transform_gate(args[0])
                sums[path] = sums.get(path, 0.0) + float(t.sum())
                counts[path] = counts.get(path, 0) + t.numel()
            hooks.append(module.register_forward_hook(record))
    try:
        model.eval()
        for x, _ in batches:
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {path: sums[path] / counts[path] for path in sums}
