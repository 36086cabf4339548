"""G copies of one network as one module, built from G single modules so that copy i starts
exactly as a single run of its seed does (same builder, same RNG draws, same init hook).

Data layout: the model takes x of shape (G, B, *input) -- copy g's batch is x[g], drawn in its
own seed's order -- and returns logits (G, B, classes). `grouped_loss` sums the copies' mean
cross-entropies: the copies share no parameter, so each copy's gradient is its single run's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlang import regional
from archlang.build import build
from archlang.errors import ArchlangError, Source
from archlang.grouped import layers as G
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.ir.structure import check_one_architecture
from archlang.layers.gate import GatedLayer
from archlang.layers.highway import Highway
from archlang.layers.residual import Residual, ZeroPadShortcut

# IR kinds with a grouped form; everything else is refused by name before anything is built.
SUPPORTED_KINDS = ("input", "linear", "conv", "batchnorm", "relu", "tanh", "sigmoid", "identity", "flatten",
                   "dropout", "maxpool", "avgpool", "global_avgpool", "seq", "repeat", "residual", "gated",
                   "highway")
# Stateless layers that act per element or per channel: one instance serves all copies.
_SHARED = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout, nn.MaxPool2d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d)

InitHook = Callable[[nn.Module, int], None]


def _children(node: IRNode) -> list[IRNode]:
    found: list[IRNode] = []
    for value in node.__dict__.values():
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, IRNode):
                found.append(child)
    return found


def check_supported(network: core.Seq, source: Source | None = None) -> None:
    """Refuse, naming the kind and pointing at it, a network with a layer that has no grouped form."""
    stack: list[IRNode] = [network]
    while stack:
        node = stack.pop()
        kind = node.kind  # type: ignore[attr-defined]
        if kind not in SUPPORTED_KINDS:
            raise ArchlangError(f"grouped training (several copies in one process) does not support "
                                f"{kind} layers", source=source, span=node.span,
                                hint="train the copies one by one; grouped runs take " + ", ".join(SUPPORTED_KINDS))
        stack.extend(reversed(_children(node)))  # pre-order: the first offender in the source


def _gate(gates: list[nn.Module], body: nn.Module) -> G.GGate:
    """The gates of G copies, shaped for the layout of the branch they scale (its last conv's channels)."""
    convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
    if not convs and not any(isinstance(m, nn.Linear) for m in body.modules()):
        # No families make such a branch; without a layer we cannot tell images from features.
        raise ArchlangError("grouped training needs a conv or linear layer inside a gated block")
    return G.GGate(gates, convs[-1].out_channels if convs else None)


def _convert_residual(singles: list[Residual], copies: int) -> Residual:
    def part(name: str) -> nn.Module | None:
        parts = [getattr(m, name) for m in singles]
        return convert(parts, copies) if parts[0] is not None else None

    first = singles[0]
    gate = _gate([m.gate for m in singles], first.body) if first.gate is not None else None
    body = convert([m.body for m in singles], copies)
    # The single Residual computes post(g*body(pre(x)) + shortcut) on any layout once g broadcasts;
    # where the body ends in batch norm, g goes into its affine parameters instead (GFoldedResidual).
    kind = G.GFoldedResidual if gate is not None and G.fold_gate(body, gate) else Residual
    return kind(body, part("shortcut"), part("pre"), part("post"), gate)  # type: ignore[arg-type]


def _convert_gated_layer(singles: list[GatedLayer], copies: int) -> GatedLayer:
    grouped = GatedLayer(convert([m.layer for m in singles], copies))
    grouped.gate = _gate([m.gate for m in singles], singles[0].layer)  # type: ignore[assignment]
    return grouped


def convert(singles: Sequence[nn.Module], copies: int) -> nn.Module:
    """The grouped module of G corresponding single modules (same structure, own weights)."""
    first = singles[0]
    if isinstance(first, nn.Sequential):
        return nn.Sequential(*[convert([m[i] for m in singles], copies) for i in range(len(first))])
    if isinstance(first, nn.Linear):
        return G.GLinear(list(singles))  # type: ignore[arg-type]
    if isinstance(first, nn.Conv2d):
        return G.GConv2d(list(singles))  # type: ignore[arg-type]
    if isinstance(first, nn.modules.batchnorm._BatchNorm):
        return G.GBatchNorm(list(singles))  # type: ignore[arg-type]
    if isinstance(first, nn.Flatten):
        return G.GFlatten(copies)
    if isinstance(first, _SHARED):
        return copy.deepcopy(first)
    if isinstance(first, Highway):
        return G.GHighway(convert([m.h for m in singles], copies), convert([m.t for m in singles], copies),
                          first.activation)
    if isinstance(first, Residual):
        return _convert_residual(list(singles), copies)  # type: ignore[arg-type]
    if isinstance(first, GatedLayer):
        return _convert_gated_layer(list(singles), copies)  # type: ignore[arg-type]
    if isinstance(first, ZeroPadShortcut):
        return G.GZeroPad(copies, first.stride, first.extra_channels)
    # check_supported refuses the IR kinds behind any other module before we get here.
    raise TypeError(f"no grouped form of {type(first).__name__}")


class GroupedModel(nn.Sequential):
    """G copies of a network built by archlang.build; state_dict names are the single network's,
    each tensor with the copies on a leading axis (split_state gives copy i's ordinary state)."""

    def __init__(self, singles: Sequence[nn.Sequential], input_shape: Sequence[int]) -> None:
        super().__init__(*convert(singles, len(singles)))
        self.copies = len(singles)
        self.input_shape = tuple(input_shape)
        self._first_is_linear = isinstance(next((m for m in self if not isinstance(m, G.GFlatten)), None), G.GLinear)
        self._norms = [m for m in self.modules() if isinstance(m, G.GBatchNorm)]
        for norm in self._norms:  # their running statistics are updated together after each forward
            norm.defer_stats = True
        self._compiled: regional.Runner | None = None

    def compile_blocks(self, chunk: int = regional.CHUNK, **options: Any) -> None:
        """Train through torch.compile'd chunks of `chunk` identical blocks (archlang.regional;
        `options` go to torch.compile); evaluation stays eager (one forward an epoch: not worth a
        second compilation)."""
        self._compiled = regional.compiled_runner(list(self), chunk, **options)

    @classmethod
    def from_ir(cls, network: core.Seq | Sequence[core.Seq], seeds: Sequence[int], init: InitHook | None = None,
                source: Source | None = None) -> GroupedModel:
        """Copy i is `torch.manual_seed(seeds[i]); build(networks[i]); init(module, i)`, as a single run.

        `network` serves every copy, or is a list of one network per copy (a sweep's points) that
        differ at most in initial values (archlang.ir.structure). The caller's RNG state is kept.
        """
        networks = [network] * len(seeds) if isinstance(network, IRNode) else list(network)
        if not seeds:
            raise ArchlangError("grouped training needs at least one seed")
        if len(networks) != len(seeds):
            raise ValueError(f"{len(networks)} networks for {len(seeds)} seeds")
        check_one_architecture(networks, source)
        check_supported(networks[0], source)
        singles = []
        with torch.random.fork_rng(devices=[]):
            for i, (seed, net) in enumerate(zip(seeds, networks)):
                torch.manual_seed(seed)
                single = build(net)
                if init is not None:
                    init(single, i)
                singles.append(single)
        return cls(singles, networks[0].items[0].shape)  # type: ignore[union-attr]

    def _to_internal(self, x: torch.Tensor) -> torch.Tensor:
        copies, batch = x.shape[:2]
        if tuple(x.shape[2:]) != self.input_shape or copies != self.copies:
            raise ValueError(f"expected input (G={self.copies}, B, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        if len(self.input_shape) == 1 or isinstance(self[0], G.GFlatten):
            features = x.reshape(copies, batch, -1).transpose(1, 2)
            # A first linear layer takes the transposed view as it is: no copy of the input, and its
            # weight gradient multiplies by the contiguous (G, B, I) input. G=8, 784 inputs, B=128:
            # its forward + backward 4.6-5.2 ms with a contiguous copy, 3.1-3.2 ms without.
            return features if self._first_is_linear else features.contiguous()
        return x.transpose(0, 1).reshape(batch, -1, *self.input_shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(G, B, *input) -> (G, B, *output)."""
        try:
            inner = self._to_internal(x)
            y = self._compiled(inner) if self._compiled is not None and self.training else super().forward(inner)
        finally:
            G.update_running_stats(self._norms)
        if G.is_features(y):
            return y.transpose(1, 2)
        return y.view(y.shape[0], self.copies, -1, *y.shape[2:]).transpose(0, 1)


def grouped_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-copy mean cross-entropy, shape (G,); backpropagate its sum."""
    # (G, classes, B) against (G, B): cross_entropy's extra-dimension form, no copy of the logits.
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=1)
