"""IR -> torch.nn.Module. Shapes come from archlang.infer; nothing here interprets the IR at run time:
the result is a tree of ordinary modules (nn.Sequential, nn.Conv2d, ...) and the few in archlang.layers."""

from __future__ import annotations

from torch import nn

from archlang import infer
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.layers.dirac import DiracConv2d
from archlang.layers.gate import GatedLayer, ResidualGate
from archlang.layers.highway import Highway
from archlang.layers.ncrelu import NCReLU
from archlang.layers.residual import Residual, ZeroPadShortcut

Shape = infer.Shape


def _conv(node: core.Conv, shape: Shape) -> nn.Conv2d:
    return nn.Conv2d(shape[0], node.out, node.kernel, node.stride, node.pad, bias=node.bias)


def _pool(node: core.MaxPool | core.AvgPool) -> nn.Module:
    if isinstance(node, core.MaxPool):
        return nn.MaxPool2d(node.kernel, node.step, node.padding, ceil_mode=node.ceil)
    return nn.AvgPool2d(node.kernel, node.step, node.padding)


def _leaf(node: IRNode, shape: Shape) -> tuple[nn.Module, Shape] | None:
    """Modules for nodes without children, or None for containers."""
    if isinstance(node, core.Conv):
        return _conv(node, shape), infer.conv_shape(node, shape)
    if isinstance(node, core.Linear):
        return nn.Linear(shape[0], node.out, bias=node.bias), (node.out,)
    if isinstance(node, core.BatchNorm):
        bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return bn(shape[0], eps=node.eps, momentum=node.momentum), shape
    simple = {core.ReLU: nn.ReLU, core.Tanh: nn.Tanh, core.Sigmoid: nn.Sigmoid, core.Identity: nn.Identity}
    if type(node) in simple:
        return simple[type(node)](), shape
    if isinstance(node, core.Dropout):
        return nn.Dropout(node.p), shape
    if isinstance(node, core.NCReLU):
        return NCReLU(), (2 * shape[0], *shape[1:])
    if isinstance(node, core.Flatten):
        out = 1
        for d in shape:
            out *= d
        return nn.Flatten(), (out,)
    if isinstance(node, (core.MaxPool, core.AvgPool)):
        return _pool(node), infer.pool_shape(node, shape)
    if isinstance(node, core.GlobalAvgPool):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (shape[0],)
    if isinstance(node, core.Dirac):
        c = node.conv
        return DiracConv2d(shape[0], c.out, c.kernel, c.stride, c.pad, node.a_init, node.b_init), \
            infer.conv_shape(c, shape)
    if isinstance(node, core.Highway):
        return _highway(node, shape), shape
    return None


def _highway(node: core.Highway, shape: Shape) -> Highway:
    if isinstance(node.h, core.Conv):
        h: nn.Module = _conv(node.h, shape)
        t: nn.Module = nn.Conv2d(shape[0], node.h.out, node.h.kernel, node.h.stride, node.h.pad, bias=True)
    else:
        h = nn.Linear(shape[0], node.h.out, bias=node.h.bias)
        t = nn.Linear(shape[0], node.h.out, bias=True)
    return Highway(h, t, node.act, node.bias_init)


def _residual(node: core.Residual, shape: Shape, gate: ResidualGate | None) -> tuple[nn.Module, Shape]:
    pre, pre_shape = build_node(node.pre, shape) if node.pre is not None else (None, shape)
    body, body_shape = build_node(node.body, pre_shape)
    plan = infer.shortcut_plan(node, shape, body_shape)
    shortcut: nn.Module | None = None
    if plan.kind == "node":
        shortcut, _ = build_node(node.shortcut, pre_shape)  # type: ignore[arg-type]
    elif plan.kind == "projection" and len(body_shape) == 3:
        shortcut = nn.Conv2d(pre_shape[0], plan.out_channels, 1, plan.stride, bias=False)
    elif plan.kind == "projection":
        shortcut = nn.Linear(pre_shape[0], plan.out_channels, bias=False)
    elif plan.kind == "zeropad":
        shortcut = ZeroPadShortcut(plan.stride, plan.out_channels - pre_shape[0])
    post, out = build_node(node.post, body_shape) if node.post is not None else (None, body_shape)
    return Residual(body, shortcut, pre, post, gate), out


def build_node(node: IRNode, shape: Shape) -> tuple[nn.Module, Shape]:
    """The module for one node and its output shape (shapes were already checked by infer)."""
    leaf = _leaf(node, shape)
    if leaf is not None:
        return leaf
    if isinstance(node, core.Seq):
        modules = []
        for item in node.items:
            module, shape = build_node(item, shape)
            modules.append(module)
        return nn.Sequential(*modules), shape
    if isinstance(node, core.Repeat):
        modules = []
        for _ in range(node.n):
            module, shape = build_node(node.block, shape)
            modules.append(module)
        return nn.Sequential(*modules), shape
    if isinstance(node, core.Residual):
        return _residual(node, shape, None)
    if isinstance(node, core.Gated) and isinstance(node.block, core.Residual):
        return _residual(node.block, shape, ResidualGate(node.k_init))
    if isinstance(node, core.Gated):
        layer, out = build_node(node.block, shape)  # type: ignore[arg-type]
        return GatedLayer(layer, node.k_init), out
    raise TypeError(f"no module for IR node {node!r}")  # infer refuses these before we get here


def build(network: core.Seq) -> nn.Sequential:
    """The torch module of an expanded network (a seq starting with input(...))."""
    shape: Shape = tuple(network.items[0].shape)  # type: ignore[union-attr]
    modules = []
    for item in network.items[1:]:
        module, shape = build_node(item, shape)
        modules.append(module)
    return nn.Sequential(*modules)
