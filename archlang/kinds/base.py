"""What a kind's entry in the table is, and the shape rules several kinds share.

A leaf kind (conv, relu, ...) gives its output shape, its cost and its module from its input shape.
A container kind (seq, residual, concat, ...) walks its children through a `Visitor`: inference
records a row per child, building makes a module per child, and both see the same names, so
the name of a child here is its module name in the built network (see `archlang.kinds.module_name`).
Nothing here imports torch: module constructors import it when they are called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from archlang.errors import ArchlangError, Span
from archlang.ir import core
from archlang.ir.base import IRNode

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Cost:
    """What one layer costs: every trainable parameter, the conv/linear weights alone, and the
    multiply-accumulates per example of conv and linear layers (the papers' and torchvision's MACs:
    BN, pooling, activations and sums are not counted, as FlopCounterMode does not count them)."""

    params: int = 0
    weights: int = 0
    macs: int = 0


class Visitor(Protocol):
    """How a container reaches its children: inference counts them, building makes their modules."""

    def child(self, node: IRNode, shape: Shape, name: str) -> Shape: ...

    def own(self, name: str, kind: str, label: str, shape: Shape, cost: Cost, allocates: bool = False) -> None:
        """A parameter-holding part that is no IR node (a projection shortcut, a gate's k); `allocates`
        when it computes a tensor of `shape` (a projection does, a gate's scalar does not)."""


def _no_cost(node: Any, shape: Shape, out: Shape) -> Cost:
    return Cost()


def _kind_label(node: Any, shape: Shape, out: Shape) -> str:
    return node.kind  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Leaf:
    """A kind without children. `module(node, in_shape, out_shape)` returns an nn.Module."""

    shape: Callable[[Any, Shape], Shape]
    module: Callable[[Any, Shape, Shape], Any]
    cost: Callable[[Any, Shape, Shape], Cost] = _no_cost
    label: Callable[[Any, Shape, Shape], str] = _kind_label
    # Tensors of the output's size the layer computes and autograd keeps for backward (infer.memory_estimate):
    # 0 for views of the input (flatten, identity), 4 for a highway layer (act(H), T, 1-T and the sum).
    outputs: int = 1


@dataclass(frozen=True)
class Container:
    """A kind with children. `walk` visits them and returns (output shape, plan); `module(node,
    children by name, plan)` assembles the nn.Module from the children's modules."""

    walk: Callable[[Any, Shape, Visitor], tuple[Shape, Any]]
    module: Callable[[Any, dict[str, Any], Any], Any]
    label: Callable[[Any], str]
    # 1 when the container computes a tensor of its own (a sum, a concatenation), as Leaf.outputs.
    outputs: int = 0


Kind = Leaf | Container


def shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def error(node: IRNode, message: str, hint: str | None = None, at: str | None = None) -> ArchlangError:
    """An error at the node, or at its argument `at` where that was written."""
    span: Span | None = node.arg_span(at) if at else node.span
    return ArchlangError(message, span=span, hint=hint)


def need_image(node: IRNode, shape: Shape, what: str) -> None:
    if len(shape) != 3:
        raise error(node, f"{what} needs an image input (C x H x W), got the vector {shape_text(shape)}",
                    hint="a vector has no spatial size; use linear(...) here, or remove flatten before it")


def spatial(node: IRNode, size: int, kernel: int, stride: int, pad: int, ceil: bool = False) -> int:
    """torch's output size of a window of `kernel` pixels (dilation included) sliding by `stride`."""
    span = size + 2 * pad - kernel
    if span < 0:
        raise error(node, f"kernel {kernel} is larger than the {size}-pixel input (padding {pad})",
                    hint="remove a pooling/stride before it, or use a smaller kernel")
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1  # as torch: the last window may not start in the padding
    return out


def conv_shape(node: core.Conv, shape: Shape) -> Shape:
    need_image(node, shape, "conv")
    if node.padding is not None and node.pad >= node.reach:
        raise error(node, f"padding {node.pad} is not smaller than the kernel {node.kernel}")
    channels, h, w = shape
    for what, count in (("input", channels), ("output", node.out)):
        if count % node.groups:
            raise error(node, f"groups={node.groups} does not divide the {count} {what} channels", at="groups",
                        hint=f"groups must divide both {channels} (input) and {node.out} (output)")
    return (node.out, spatial(node, h, node.reach, node.stride, node.pad),
            spatial(node, w, node.reach, node.stride, node.pad))


def conv_cost(node: core.Conv, shape: Shape, out: Shape) -> Cost:
    weights = node.out * (shape[0] // node.groups) * node.kernel**2
    return Cost(weights + (node.out if node.bias else 0), weights, weights * out[1] * out[2])


def pool_shape(node: core.MaxPool | core.AvgPool, shape: Shape) -> Shape:
    need_image(node, shape, node.kind)
    if node.padding * 2 > node.kernel:
        raise error(node, f"pool padding {node.padding} is more than half the kernel {node.kernel}")
    ceil = isinstance(node, core.MaxPool) and node.ceil
    c, h, w = shape
    return (c, spatial(node, h, node.kernel, node.step, node.padding, ceil),
            spatial(node, w, node.kernel, node.step, node.padding, ceil))
