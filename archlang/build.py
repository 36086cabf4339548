"""IR -> torch.nn.Module. Nothing here interprets the IR at run time: the result is a tree of
ordinary modules (nn.Sequential, nn.Conv2d, ...) and the few in archlang.layers, each made by its
kind's entry in archlang.kinds, named as archlang.kinds.module_name says."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from archlang import infer, kinds
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.kinds.base import Cost, Leaf

Shape = infer.Shape


class _Modules:
    """The visitor a container's walk gets while building: each child becomes a module under its name."""

    def __init__(self) -> None:
        self.children: dict[str, nn.Module] = {}

    def child(self, node: IRNode, shape: Shape, name: str) -> Shape:
        module, out = build_node(node, shape)
        self.children[name] = module
        return out

    def own(self, name: str, kind: str, label: str, shape: Shape, cost: Cost, allocates: bool = False) -> None:
        """Parts that are no IR node are made by the container's own module constructor."""


def build_node(node: IRNode, shape: Shape) -> tuple[nn.Module, Shape]:
    """The module for one node and its output shape (shapes were already checked by infer)."""
    entry = kinds.entry(node)
    if isinstance(entry, Leaf):
        out = entry.shape(node, shape)
        return entry.module(node, shape, out), out
    children = _Modules()
    out, plan = entry.walk(node, shape, children)
    return entry.module(node, children.children, plan), out


def build(network: core.Seq, batch: int = 1, training: bool = False, device: Any = "cpu",
          summary: infer.Summary | None = None) -> nn.Sequential:
    """The torch module of an expanded network (a seq starting with input(...)).

    Refuses first, from the IR, a network that cannot fit on `device` at `batch` examples (running it,
    or with `training`, training it: see infer.memory_estimate), so no caller allocates what cannot fit.
    """
    summary = summary or infer.summarize(network)
    infer.check_memory(infer.memory_estimate(summary, batch), training=training, device=str(device))
    shape: Shape = summary.input_shape
    modules: dict[str, nn.Module] = OrderedDict()
    for i, item in enumerate(network.items[1:], start=1):
        modules[kinds.module_name(i)], shape = build_node(item, shape)
    return nn.Sequential(modules)
