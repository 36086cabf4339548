"""Container kinds: how each walks its children, and the module it assembles from theirs.

A child's name given to the visitor is its attribute name in the assembled module, so the
summary's row paths are the built network's module names.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.kinds.base import Container, Cost, Shape, Visitor, error, shape_text


def _sequential(children: dict[str, Any]) -> Any:
    from torch import nn

    return nn.Sequential(OrderedDict(children))


def _seq_walk(node: core.Seq, shape: Shape, visit: Visitor) -> tuple[Shape, None]:
    for i, item in enumerate(node.items):
        shape = visit.child(item, shape, str(i))
    return shape, None


def _repeat_walk(node: core.Repeat, shape: Shape, visit: Visitor) -> tuple[Shape, None]:
    for i in range(node.n):  # n separate copies: each gets its own weights (and its own input shape)
        shape = visit.child(node.block, shape, str(i))
    return shape, None


# ---- branches: concat and add -------------------------------------------------------------------


def _branch_shapes(node: core.Concat | core.Add, shape: Shape, visit: Visitor) -> list[Shape]:
    return [visit.child(branch, shape, str(i)) for i, branch in enumerate(node.branches)]


def _concat_walk(node: core.Concat, shape: Shape, visit: Visitor) -> tuple[Shape, None]:
    outs = _branch_shapes(node, shape, visit)
    first = outs[0]
    for branch, out in zip(node.branches[1:], outs[1:]):
        if len(out) != len(first) or out[1:] != first[1:]:
            what = "spatial size" if len(out) == len(first) == 3 else "rank"
            raise error(branch, f"concat joins branches on channels, but this branch gives {shape_text(out)} and "
                        f"the first {shape_text(first)}: the {what} differs",
                        hint="give every branch the same stride and padding")
    return (sum(out[0] for out in outs), *first[1:]), None


def _add_walk(node: core.Add, shape: Shape, visit: Visitor) -> tuple[Shape, None]:
    outs = _branch_shapes(node, shape, visit)
    for branch, out in zip(node.branches[1:], outs[1:]):
        if out != outs[0]:
            raise error(branch, f"add sums branches of one shape, but this branch gives {shape_text(out)} and the "
                        f"first {shape_text(outs[0])}", hint="give every branch the same width, stride and padding")
    return outs[0], None


def _branches_module(node: core.Concat | core.Add, children: dict[str, Any], plan: None) -> Any:
    from archlang.layers.branches import Branches

    return Branches(list(children.values()), "concat" if isinstance(node, core.Concat) else "add")


# ---- residual and gated -------------------------------------------------------------------------


@dataclass(frozen=True)
class ShortcutPlan:
    """How a residual's shortcut is realised: 'identity', 'projection', 'zeropad' or 'node'."""

    kind: str
    stride: int = 1
    out_channels: int = 0
    in_channels: int = 0
    image: bool = True


def _identity_mismatch(node: core.Residual, in_shape: Shape, body_shape: Shape) -> None:
    if in_shape != body_shape:
        raise error(node, f"the residual body maps {shape_text(in_shape)} to {shape_text(body_shape)}, "
                    "but an identity shortcut needs equal shapes",
                    hint="use shortcut=projection (or auto), or keep width and size in the body")


def shortcut_plan(node: core.Residual, in_shape: Shape, body_shape: Shape, pre_shape: Shape) -> ShortcutPlan:
    """Decide (and check) the shortcut of a residual from the shapes around it."""
    kind = node.shortcut if isinstance(node.shortcut, str) else "node"
    if kind == "node":
        return ShortcutPlan("node")
    if kind == "identity" or (kind in ("auto", "zeropad") and in_shape == body_shape):
        _identity_mismatch(node, in_shape, body_shape)
        return ShortcutPlan("identity")
    if len(in_shape) != len(body_shape):
        raise error(node, f"the residual body turns {shape_text(in_shape)} into {shape_text(body_shape)}; "
                    "no shortcut can join an image and a vector")
    stride = 1
    if len(in_shape) == 3:
        # A 1x1 convolution with stride s and no padding gives ceil(size / s) pixels.
        stride = max(1, in_shape[1] // max(1, body_shape[1]))
        if -(-in_shape[1] // stride) != body_shape[1] or -(-in_shape[2] // stride) != body_shape[2]:
            raise error(node, f"the shortcut cannot map {shape_text(in_shape)} onto the body's "
                        f"{shape_text(body_shape)} with a strided 1x1 convolution")
    if kind == "zeropad":
        if len(in_shape) != 3 or body_shape[0] < in_shape[0]:
            raise error(node, "a zero-padding shortcut needs an image whose width does not shrink")
        return ShortcutPlan("zeropad", stride, body_shape[0], pre_shape[0])
    return ShortcutPlan("projection", stride, body_shape[0], pre_shape[0], len(body_shape) == 3)


def _projection_row(plan: ShortcutPlan, body_shape: Shape, visit: Visitor) -> None:
    weights = plan.in_channels * plan.out_channels
    macs = weights * (body_shape[1] * body_shape[2] if plan.image else 1)
    label = (f"projection 1x1/{plan.stride}, {plan.in_channels}->{plan.out_channels}" if plan.image
             else f"projection, {plan.in_channels}->{plan.out_channels}")
    visit.own("shortcut", "projection", label, body_shape, Cost(weights, weights, macs), allocates=True)


def residual_walk(node: core.Residual, shape: Shape, visit: Visitor) -> tuple[Shape, ShortcutPlan]:
    pre_shape = visit.child(node.pre, shape, "pre") if node.pre is not None else shape
    body_shape = visit.child(node.body, pre_shape, "body")
    plan = shortcut_plan(node, shape, body_shape, pre_shape)
    if plan.kind == "node":
        short = visit.child(node.shortcut, pre_shape, "shortcut")  # type: ignore[arg-type]
        if short != body_shape:
            raise error(node, f"the shortcut gives {shape_text(short)} but the body {shape_text(body_shape)}")
    elif plan.kind == "projection":
        _projection_row(plan, body_shape, visit)
    out = visit.child(node.post, body_shape, "post") if node.post is not None else body_shape
    return out, plan


def _shortcut_module(plan: ShortcutPlan, children: dict[str, Any]) -> Any:
    from torch import nn

    from archlang.layers.residual import ZeroPadShortcut

    if plan.kind == "node":
        return children["shortcut"]
    if plan.kind == "projection" and plan.image:
        return nn.Conv2d(plan.in_channels, plan.out_channels, 1, plan.stride, bias=False)
    if plan.kind == "projection":
        return nn.Linear(plan.in_channels, plan.out_channels, bias=False)
    if plan.kind == "zeropad":
        return ZeroPadShortcut(plan.stride, plan.out_channels - plan.in_channels)
    return None


def residual_module(node: Any, children: dict[str, Any], plan: ShortcutPlan, gate: Any = None) -> Any:
    from archlang.layers.residual import Residual

    return Residual(children["body"], _shortcut_module(plan, children), children.get("pre"), children.get("post"),
                    gate)


@dataclass(frozen=True)
class GatePlan:
    residual: ShortcutPlan | None  # the shortcut of a gated residual, None for a gated plain layer


def _gated_walk(node: core.Gated, shape: Shape, visit: Visitor) -> tuple[Shape, GatePlan]:
    from archlang.ir.families import Family

    if isinstance(node.block, str):
        raise error(node, f"gated({node.block}) is a block template for a family, e.g. "
                    f"mlp(block=gated({node.block}))", hint="gate a concrete block: gated(residual(...))")
    if isinstance(node.block, Family):
        raise error(node, f"gated({node.block.kind}(...)) can only be the whole network")
    if isinstance(node.block, core.Residual):
        out, plan = residual_walk(node.block, shape, visit)
        visit.own("gate.k", "gate", "gate k", out, Cost(1))
        return out, GatePlan(plan)
    out = visit.child(node.block, shape, "layer")  # type: ignore[arg-type]
    if out != shape:
        raise error(node, f"a gated plain block must keep its shape (u = g(k)f(x) + (1-g(k))x), "
                    f"but it maps {shape_text(shape)} to {shape_text(out)}",
                    hint="gate a residual(...) block instead, or keep the width")
    visit.own("gate.k", "gate", "gate k", out, Cost(1))
    return out, GatePlan(None)


def _gated_module(node: core.Gated, children: dict[str, Any], plan: GatePlan) -> Any:
    from archlang.layers.gate import GatedLayer, ResidualGate

    if plan.residual is not None:
        return residual_module(node.block, children, plan.residual, ResidualGate(node.k_init))
    return GatedLayer(children["layer"], node.k_init)


def _gated_label(node: core.Gated) -> str:
    return "gated residual" if isinstance(node.block, core.Residual) else "gated"


def _sequential_module(node: IRNode, children: dict[str, Any], plan: None) -> Any:
    return _sequential(children)


CONTAINERS: dict[type, Container] = {
    core.Seq: Container(_seq_walk, _sequential_module, lambda node: "seq"),
    core.Repeat: Container(_repeat_walk, _sequential_module, lambda node: f"repeat x{node.n}"),
    core.Concat: Container(_concat_walk, _branches_module, lambda node: f"concat of {len(node.branches)}",
                           outputs=1),
    core.Add: Container(_add_walk, _branches_module, lambda node: f"add of {len(node.branches)}", outputs=1),
    core.Residual: Container(residual_walk, residual_module, lambda node: "residual", outputs=1),
    core.Gated: Container(_gated_walk, _gated_module, _gated_label, outputs=1),
}
