"""Gate statistics of a network: Gated ResNet k per block (Table 2, Fig. 5/7), Dirac a and b per layer
(DiracNets Fig. 4), highway transform-gate bias and activity per layer and per block (Highway Figs. 2 and 3)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from archlang.errors import ArchlangError
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


def highway_layers(model: nn.Module) -> list[tuple[str, Highway]]:
    """The highway layers of a network with their module paths, in network order (Fig. 2's rows)."""
    return [(path, m) for path, m in model.named_modules() if isinstance(m, Highway)]


def _stacked(rows: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """Per-layer tensors stacked on `dim`, their last (block) axis padded with NaN to the widest layer:
    Highway B's stages have 32, 80 and 128 channels (NaN draws as an empty cell in the maps)."""
    widest = max(row.shape[-1] for row in rows)
    return torch.stack([nn.functional.pad(row, (0, widest - row.shape[-1]), value=float("nan")) for row in rows], dim)


def _per_block(t: torch.Tensor) -> torch.Tensor:
    """(N, blocks): a fully connected layer's units, or a convolutional layer's channels averaged over
    its positions. A conv highway layer's gate bias is per channel, so a channel is its block; its
    layers differ in H x W, so positions could not be a map's columns anyway."""
    return t.flatten(2).mean(2) if t.dim() > 2 else t


def over_gates(values: torch.Tensor) -> float:
    """The mean over the gates a net has: a narrower layer's blocks past its width are the NaN padding
    of `_stacked` (a conv highway net's stages) and count neither way."""
    values = values.double()
    return float(values[~torch.isnan(values)].mean())


def fraction_below(values: torch.Tensor, limit: torch.Tensor | float) -> float:
    """The fraction of the gates a net has whose value is below `limit` (the NaN padding not counted)."""
    values = values.double()
    return over_gates(torch.where(torch.isnan(values), values, (values < limit).double()))


def gate_biases(model: nn.Module) -> torch.Tensor:
    """Transform gate bias per highway layer and block, (layers, blocks): Highway Fig. 2, column 1."""
    return _stacked([m.t.bias.detach().double().flatten() for _, m in highway_layers(model)])  # type: ignore[union-attr]


@dataclass
class HighwayMaps:
    """Per-block transform gate statistics of every highway layer (rows: layers, columns: blocks: units,
    or a conv layer's channels averaged over positions; NaN past a narrower layer's width)."""

    paths: list[str]
    mean_t: torch.Tensor  # (L, B) mean T over every input: Fig. 2, column 2
    class_mean_t: torch.Tensor  # (C, L, B) mean T over each class's inputs (NaN for a class never seen)
    class_counts: torch.Tensor  # (C,) inputs seen per class
    sample_index: int  # position of the single sample in the batches' order
    sample_label: int
    sample_t: torch.Tensor  # (L, B) T for that sample: Fig. 2, column 3
    sample_y: torch.Tensor  # (L, B) block outputs y for that sample: Fig. 2, column 4

    def class_difference(self) -> torch.Tensor:
        """(C, L, B) each class's mean T minus the mean over all inputs: Highway Fig. 3."""
        return self.class_mean_t - self.mean_t


@contextmanager
def _recording(model: nn.Module, on_layer: Callable[[int, torch.Tensor, torch.Tensor], None]):
    """Forward hooks that hand each highway layer's T(x) and output y to `on_layer(index, t, y)`;
    yields the highway layers."""
    layers = highway_layers(model)
    hooks = []
    for index, (_, module) in enumerate(layers):
        def record(mod: Highway, args, out: torch.Tensor, index: int = index) -> None:
            # T is computed again from the layer's input: Highway.forward keeps it local.
            on_layer(index, _per_block(mod.transform_gate(args[0])), _per_block(out))
        hooks.append(module.register_forward_hook(record))
    try:
        yield layers
    finally:
        for hook in hooks:
            hook.remove()


@torch.no_grad()
def highway_maps(model: nn.Module, batches, classes: int, sample_index: int = 0) -> HighwayMaps:
    """Highway Fig. 2 (columns 2-4) and Fig. 3 in one pass over (x, label) batches, summed in float64.

    Memory is bounded by one batch: per layer, only the batch's T and y and a (classes, blocks) sum are kept."""
    batch: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> this batch's (T, y)
    sums: dict[int, torch.Tensor] = {}  # layer -> (classes, blocks) sum of T per class
    sample: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> the sample's (T, y)
    counts = torch.zeros(classes, dtype=torch.float64)
    seen, label = 0, -1
    model.eval()
    with _recording(model, lambda i, t, y: batch.__setitem__(i, (t, y))) as layers:
        if not layers:
            raise ArchlangError("the network has no highway layers", hint="the maps are of highway(...) networks")
        for x, labels in batches:
            model(x)
            row = sample_index - seen
            for i, (t, y) in batch.items():
                sums.setdefault(i, torch.zeros(classes, t.shape[1], dtype=torch.float64))
                sums[i].index_add_(0, labels.long(), t.double())
                if 0 <= row < len(labels):
                    sample[i] = (t[row].double(), y[row].double())
            label = int(labels[row]) if 0 <= row < len(labels) else label
            counts += torch.bincount(labels.long(), minlength=classes).double()
            seen += len(labels)
    if label < 0:
        raise ArchlangError(f"sample {sample_index} is not among the {seen} inputs")
    total = _stacked([sums[i] for i in range(len(layers))], 1)  # (C, L, B)
    return HighwayMaps(paths=[p for p, _ in layers], mean_t=total.sum(0) / counts.sum(),
                       class_mean_t=total / counts[:, None, None], class_counts=counts, sample_index=sample_index,
                       sample_label=label, sample_t=_stacked([sample[i][0] for i in range(len(layers))]),
                       sample_y=_stacked([sample[i][1] for i in range(len(layers))]))


@torch.no_grad()
def highway_activity(model: nn.Module, batches) -> dict[str, float]:
    """Mean transform-gate output T(x) per highway layer over the given inputs (Highway Fig. 2, column 2)."""
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}

    def on_layer(index: int, t: torch.Tensor, _y: torch.Tensor) -> None:
        sums[index] = sums.get(index, 0.0) + float(t.sum())
        counts[index] = counts.get(index, 0) + t.numel()

    model.eval()
    with _recording(model, on_layer) as layers:
        for x, _ in batches:
            model(x)
    return {path: sums[i] / counts[i] for i, (path, _) in enumerate(layers) if i in sums}
