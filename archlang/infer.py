"""Shape, parameter and multiply-accumulate inference on the IR, by formula, without torch.

This is what `archlang params` runs (so it must stay torch-free) and what `compile` prints;
tests check every count here against `sum(p.numel())` of the built module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from archlang.errors import ArchlangError
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.ir.families import Family

Shape = tuple[int, ...]

# Networks beyond these sizes are refused before anything is allocated or even fully walked.
MAX_NODES = 2_000_000


@dataclass
class Layer:
    """One row of the summary: a node, where it sits, what it outputs and what it costs."""

    path: str
    depth: int
    kind: str
    label: str
    out_shape: Shape
    params: int = 0
    weights: int = 0
    macs: int = 0
    leaf: bool = True


@dataclass
class Summary:
    input_shape: Shape
    output_shape: Shape
    layers: list[Layer] = field(default_factory=list)
    params: int = 0
    weights: int = 0
    macs: int = 0


@dataclass
class ShortcutPlan:
    """How a residual's shortcut is realised: 'identity', 'projection', 'zeropad' or 'node'."""

    kind: str
    stride: int = 1
    out_channels: int = 0


def shape_text(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _error(node: IRNode, message: str, hint: str | None = None) -> ArchlangError:
    return ArchlangError(message, span=node.span, hint=hint)


def _need_image(node: IRNode, shape: Shape, what: str) -> None:
    if len(shape) != 3:
        raise _error(node, f"{what} needs an image input (C x H x W), got the vector {shape_text(shape)}",
                     hint="a vector has no spatial size; use linear(...) here, or remove flatten before it")


def _spatial(node: IRNode, size: int, kernel: int, stride: int, pad: int, ceil: bool = False) -> int:
    span = size + 2 * pad - kernel
    if span < 0:
        raise _error(node, f"kernel {kernel} is larger than the {size}-pixel input (padding {pad})",
                     hint="remove a pooling/stride before it, or use a smaller kernel")
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1  # as torch: the last window may not start in the padding
    return out


def conv_shape(node: core.Conv, shape: Shape) -> Shape:
    _need_image(node, shape, "conv")
    if node.pad > node.kernel // 2 and node.padding is not None and node.pad >= node.kernel:
        raise _error(node, f"padding {node.pad} is not smaller than the kernel {node.kernel}")
    _c, h, w = shape
    return (node.out, _spatial(node, h, node.kernel, node.stride, node.pad),
            _spatial(node, w, node.kernel, node.stride, node.pad))


def pool_shape(node: core.MaxPool | core.AvgPool, shape: Shape) -> Shape:
    _need_image(node, shape, node.kind)
    if node.padding * 2 > node.kernel:
        raise _error(node, f"pool padding {node.padding} is more than half the kernel {node.kernel}")
    ceil = isinstance(node, core.MaxPool) and node.ceil
    c, h, w = shape
    return (c, _spatial(node, h, node.kernel, node.step, node.padding, ceil),
            _spatial(node, w, node.kernel, node.step, node.padding, ceil))


def shortcut_plan(node: core.Residual, in_shape: Shape, body_shape: Shape) -> ShortcutPlan:
    """Decide (and check) the shortcut of a residual from the shapes around it."""
    kind = node.shortcut if isinstance(node.shortcut, str) else "node"
    if kind == "node":
        return ShortcutPlan("node")
    if kind == "identity" or (kind in ("auto", "zeropad") and in_shape == body_shape):
        if in_shape != body_shape:
            raise _error(node, f"the residual body maps {shape_text(in_shape)} to {shape_text(body_shape)}, "
                         "but an identity shortcut needs equal shapes",
                         hint="use shortcut=projection (or auto), or keep width and size in the body")
        return ShortcutPlan("identity")
    if len(in_shape) != len(body_shape):
        raise _error(node, f"the residual body turns {shape_text(in_shape)} into {shape_text(body_shape)}; "
                     "no shortcut can join an image and a vector")
    stride = 1
    if len(in_shape) == 3:
        # A 1x1 convolution with stride s and no padding gives ceil(size / s) pixels.
        stride = max(1, in_shape[1] // max(1, body_shape[1]))
        if -(-in_shape[1] // stride) != body_shape[1] or -(-in_shape[2] // stride) != body_shape[2]:
            raise _error(node, f"the shortcut cannot map {shape_text(in_shape)} onto the body's "
                         f"{shape_text(body_shape)} with a strided 1x1 convolution")
    if kind == "zeropad":
        if len(in_shape) != 3 or body_shape[0] < in_shape[0]:
            raise _error(node, "a zero-padding shortcut needs an image whose width does not shrink")
        return ShortcutPlan("zeropad", stride, body_shape[0])
    return ShortcutPlan("projection", stride, body_shape[0])


class _Walker:
    """Walks the IR once, recording a Layer per node and checking shapes as it goes."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.visited = 0

    def row(self, path: str, depth: int, node: IRNode, label: str, shape: Shape, params: int = 0,
            weights: int = 0, macs: int = 0, leaf: bool = True) -> Layer:
        layer = Layer(path, depth, node.kind, label, shape, params, weights, macs, leaf)  # type: ignore[attr-defined]
        self.layers.append(layer)
        return layer

    def walk(self, node: IRNode, shape: Shape, path: str, depth: int) -> Shape:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _error(node, f"the network has more than {MAX_NODES} layers")
        method = getattr(self, f"_{node.kind}", None)  # type: ignore[attr-defined]
        if method is None:
            return self._other(node, shape, path, depth)
        return method(node, shape, path, depth)

    def _other(self, node: IRNode, shape: Shape, path: str, depth: int) -> Shape:
        if isinstance(node, Family):
            raise _error(node, f"{node.kind}(...) is a whole network and cannot be used inside another",
                         hint="build a custom network from core nodes (seq, conv, residual, ...)")
        if node.kind == "B":  # type: ignore[attr-defined]
            raise _error(node, "a block type B(...) only means something as wrn(block=...)")
        raise _error(node, f"{node.kind} cannot appear here")  # type: ignore[attr-defined]

    def _input(self, node: core.Input, shape: Shape, path: str, depth: int) -> Shape:
        raise _error(node, "input(...) may only start the network", hint="move it to the front of the outer seq")

    def _conv(self, node: core.Conv, shape: Shape, path: str, depth: int) -> Shape:
        out = conv_shape(node, shape)
        weights = node.out * shape[0] * node.kernel**2
        macs = weights * out[1] * out[2]
        label = f"conv {node.kernel}x{node.kernel}" + (f"/{node.stride}" if node.stride > 1 else "") + \
            f", {shape[0]}->{node.out}"
        self.row(path, depth, node, label, out, weights + (node.out if node.bias else 0), weights, macs)
        return out

    def _linear(self, node: core.Linear, shape: Shape, path: str, depth: int) -> Shape:
        if len(shape) != 1:
            raise _error(node, f"linear needs a flat input, got {shape_text(shape)}",
                         hint="add flatten (or global_avgpool) before it")
        weights = shape[0] * node.out
        self.row(path, depth, node, f"linear, {shape[0]}->{node.out}", (node.out,),
                 weights + (node.out if node.bias else 0), weights, weights)
        return (node.out,)

    def _batchnorm(self, node: core.BatchNorm, shape: Shape, path: str, depth: int) -> Shape:
        self.row(path, depth, node, f"batchnorm({shape[0]})", shape, 2 * shape[0])
        return shape

    def _same(self, node: IRNode, shape: Shape, path: str, depth: int) -> Shape:
        label = node.kind if not isinstance(node, core.Dropout) else f"dropout({node.p:g})"  # type: ignore[attr-defined]
        self.row(path, depth, node, label, shape)
        return shape

    _relu = _tanh = _sigmoid = _identity = _dropout = _same

    def _ncrelu(self, node: core.NCReLU, shape: Shape, path: str, depth: int) -> Shape:
        out = (2 * shape[0], *shape[1:])
        self.row(path, depth, node, "ncrelu", out)
        return out

    def _flatten(self, node: core.Flatten, shape: Shape, path: str, depth: int) -> Shape:
        out = (math.prod(shape),)
        self.row(path, depth, node, "flatten", out)
        return out

    def _maxpool(self, node: core.MaxPool, shape: Shape, path: str, depth: int) -> Shape:
        out = pool_shape(node, shape)
        self.row(path, depth, node, f"{node.kind} {node.kernel}x{node.kernel}/{node.step}", out)
        return out

    _avgpool = _maxpool

    def _global_avgpool(self, node: core.GlobalAvgPool, shape: Shape, path: str, depth: int) -> Shape:
        _need_image(node, shape, "global_avgpool")
        self.row(path, depth, node, "global_avgpool", (shape[0],))
        return (shape[0],)

    def _container(self, node: IRNode, label: str, shape: Shape, path: str, depth: int) -> Layer:
        return self.row(path, depth, node, label, shape, leaf=False)

    def _sum_since(self, row: Layer, start: int) -> None:
        inner = [layer for layer in self.layers[start:] if layer.leaf]
        row.params = sum(layer.params for layer in inner)
        row.weights = sum(layer.weights for layer in inner)
        row.macs = sum(layer.macs for layer in inner)

    def _seq(self, node: core.Seq, shape: Shape, path: str, depth: int) -> Shape:
        row = self._container(node, "seq", shape, path, depth)
        start = len(self.layers)
        for i, item in enumerate(node.items):
            shape = self.walk(item, shape, f"{path}.{i}" if path else str(i), depth + 1)
        row.out_shape = shape
        self._sum_since(row, start)
        return shape

    def _repeat(self, node: core.Repeat, shape: Shape, path: str, depth: int) -> Shape:
        row = self._container(node, f"repeat x{node.n}", shape, path, depth)
        start = len(self.layers)
        for i in range(node.n):
            shape = self.walk(node.block, shape, f"{path}.{i}", depth + 1)
        row.out_shape = shape
        self._sum_since(row, start)
        return shape

    def residual_parts(self, node: core.Residual, shape: Shape, path: str, depth: int) -> Shape:
        pre_shape = self.walk(node.pre, shape, f"{path}.pre", depth + 1) if node.pre is not None else shape
        body_shape = self.walk(node.body, pre_shape, f"{path}.body", depth + 1)
        plan = shortcut_plan(node, shape, body_shape)
        if plan.kind == "node":
            short = self.walk(node.shortcut, pre_shape, f"{path}.shortcut", depth + 1)  # type: ignore[arg-type]
            if short != body_shape:
                raise _error(node, f"the shortcut gives {shape_text(short)} but the body {shape_text(body_shape)}")
        elif plan.kind == "projection":
            in_c = pre_shape[0]
            weights = in_c * plan.out_channels
            macs = weights * (body_shape[1] * body_shape[2] if len(body_shape) == 3 else 1)
            label = (f"projection 1x1/{plan.stride}, {in_c}->{plan.out_channels}" if len(body_shape) == 3
                     else f"projection, {in_c}->{plan.out_channels}")
            self.layers.append(Layer(f"{path}.shortcut", depth + 1, "projection", label, body_shape,
                                     weights, weights, macs))
        if node.post is not None:
            body_shape = self.walk(node.post, body_shape, f"{path}.post", depth + 1)
        return body_shape

    def _residual(self, node: core.Residual, shape: Shape, path: str, depth: int) -> Shape:
        row = self._container(node, "residual", shape, path, depth)
        start = len(self.layers)
        row.out_shape = self.residual_parts(node, shape, path, depth)
        self._sum_since(row, start)
        return row.out_shape

    def _gated(self, node: core.Gated, shape: Shape, path: str, depth: int) -> Shape:
        if isinstance(node.block, str):
            raise _error(node, f"gated({node.block}) is a block template for a family, e.g. "
                         f"mlp(block=gated({node.block}))", hint="gate a concrete block: gated(residual(...))")
        if isinstance(node.block, Family):
            raise _error(node, f"gated({node.block.kind}(...)) can only be the whole network")
        row = self._container(node, "gated residual" if isinstance(node.block, core.Residual) else "gated",
                              shape, path, depth)
        start = len(self.layers)
        if isinstance(node.block, core.Residual):
            out = self.residual_parts(node.block, shape, path, depth)
        else:
            out = self.walk(node.block, shape, f"{path}.layer", depth + 1)
            if out != shape:
                raise _error(node, f"a gated plain block must keep its shape (u = g(k)f(x) + (1-g(k))x), "
                             f"but it maps {shape_text(shape)} to {shape_text(out)}",
                             hint="gate a residual(...) block instead, or keep the width")
        self.layers.append(Layer(f"{path}.gate.k", depth + 1, "gate", "gate k", out, 1, 0, 0))
        row.out_shape = out
        self._sum_since(row, start)
        return out

    def _dirac(self, node: core.Dirac, shape: Shape, path: str, depth: int) -> Shape:
        out = conv_shape(node.conv, shape)
        weights = node.conv.out * shape[0] * node.conv.kernel**2
        label = f"dirac conv {node.conv.kernel}x{node.conv.kernel}, {shape[0]}->{node.conv.out}"
        self.row(path, depth, node, label, out, weights + 2, weights, weights * out[1] * out[2])
        return out

    def _highway(self, node: core.Highway, shape: Shape, path: str, depth: int) -> Shape:
        if isinstance(node.h, core.Conv):
            out = conv_shape(node.h, shape)
            weights = node.h.out * shape[0] * node.h.kernel**2
            macs = weights * out[1] * out[2]
        else:
            if len(shape) != 1:
                raise _error(node, f"a linear highway layer needs a flat input, got {shape_text(shape)}",
                             hint="add flatten before it")
            out = (node.h.out,)
            weights = macs = shape[0] * node.h.out
        if out != shape:
            raise _error(node, f"a highway layer must keep its input shape ({shape_text(shape)}), but H gives "
                         f"{shape_text(out)}", hint="change the width with a plain layer before the highway layers")
        # T always has a bias (it carries the negative initialisation); H only if asked.
        biases = out[0] + (out[0] if node.h.bias else 0)
        self.row(path, depth, node, f"highway {node.h.kind} ({node.act}), H and T", out,
                 2 * weights + biases, 2 * weights, 2 * macs)
        return out


def summarize(network: core.Seq) -> Summary:
    """Check every shape of an expanded network and count its parameters and MACs."""
    if not network.items or not isinstance(network.items[0], core.Input):
        raise _error(network, "the network's input shape is unknown",
                     hint="start the network with input(C, H, W), e.g. seq(input(3, 32, 32), conv(16), ...)")
    walker = _Walker()
    shape: Shape = tuple(network.items[0].shape)  # type: ignore[union-attr]
    input_shape = shape
    for i, item in enumerate(network.items[1:]):
        shape = walker.walk(item, shape, str(i), 0)
    leaves = [layer for layer in walker.layers if layer.leaf]
    return Summary(input_shape, shape, walker.layers, sum(x.params for x in leaves), sum(x.weights for x in leaves),
                   sum(x.macs for x in leaves))


def round_like_papers(count: int) -> str:
    """36,479,194 -> '36.5M', 38,986 -> '39K': how the papers print parameter counts."""
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M"
    if count >= 1_000:
        return f"{count / 1e3:.0f}K"
    return str(count)
