"""Leaf kinds: for each, its output shape, its cost and its module, side by side.

Module constructors import torch inside, so `archlang params` (which reads shapes and costs only)
never imports it.
"""

from __future__ import annotations

import math
from typing import Any

from archlang.ir import core
from archlang.kinds.base import Cost, Leaf, Shape, conv_cost, conv_shape, error, need_image, pool_shape, shape_text


def _same(node: Any, shape: Shape) -> Shape:
    return shape


def _input_shape(node: core.Input, shape: Shape) -> Shape:
    raise error(node, "input(...) may only start the network", hint="move it to the front of the outer seq")


def _unreachable(node: Any, shape: Shape, out: Shape) -> Any:  # pragma: no cover - shape() refuses first
    raise AssertionError(f"{node.kind} has no module")


# ---- conv, linear, batchnorm --------------------------------------------------------------------


def _conv_label(node: core.Conv, shape: Shape, out: Shape) -> str:
    extras = "".join(f", {name}={getattr(node, name)}" for name in ("groups", "dilation") if getattr(node, name) != 1)
    return (f"conv {node.kernel}x{node.kernel}" + (f"/{node.stride}" if node.stride > 1 else "")
            + f", {shape[0]}->{node.out}{extras}")


def conv_module(node: core.Conv, shape: Shape, out: Shape) -> Any:
    from torch import nn

    return nn.Conv2d(shape[0], node.out, node.kernel, node.stride, node.pad, dilation=node.dilation,
                     groups=node.groups, bias=node.bias)


def _linear_shape(node: core.Linear, shape: Shape) -> Shape:
    if len(shape) != 1:
        raise error(node, f"linear needs a flat input, got {shape_text(shape)}",
                    hint="add flatten (or global_avgpool) before it")
    return (node.out,)


def linear_cost(node: core.Linear, shape: Shape, out: Shape) -> Cost:
    weights = shape[0] * node.out
    return Cost(weights + (node.out if node.bias else 0), weights, weights)


def linear_module(node: core.Linear, shape: Shape, out: Shape) -> Any:
    from torch import nn

    return nn.Linear(shape[0], node.out, bias=node.bias)


def _bn_module(node: core.BatchNorm, shape: Shape, out: Shape) -> Any:
    from torch import nn

    bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    return bn(shape[0], eps=node.eps, momentum=node.momentum)


# ---- activations and shape-only layers ----------------------------------------------------------


def _torch_module(name: str, *args: Any) -> Any:
    from torch import nn

    return getattr(nn, name)(*args)


def _simple(name: str, outputs: int = 1) -> Leaf:
    """A layer that keeps its input's shape and has no parameters, made by torch.nn.`name`()."""
    return Leaf(_same, lambda node, shape, out: _torch_module(name), outputs=outputs)


def _ncrelu_module(node: core.NCReLU, shape: Shape, out: Shape) -> Any:
    from archlang.layers.ncrelu import NCReLU

    return NCReLU()


def _flatten_shape(node: core.Flatten, shape: Shape) -> Shape:
    return (math.prod(shape),)


# ---- pooling ------------------------------------------------------------------------------------


def _pool_label(node: core.MaxPool | core.AvgPool, shape: Shape, out: Shape) -> str:
    return f"{node.kind} {node.kernel}x{node.kernel}/{node.step}"


def _pool_module(node: core.MaxPool | core.AvgPool, shape: Shape, out: Shape) -> Any:
    from torch import nn

    if isinstance(node, core.MaxPool):
        return nn.MaxPool2d(node.kernel, node.step, node.padding, ceil_mode=node.ceil)
    return nn.AvgPool2d(node.kernel, node.step, node.padding)


def _adaptive_shape(node: core.AdaptiveAvgPool, shape: Shape) -> Shape:
    need_image(node, shape, "adaptive_avgpool")
    return (shape[0], node.size, node.size)


def _global_shape(node: core.GlobalAvgPool, shape: Shape) -> Shape:
    need_image(node, shape, "global_avgpool")
    return (shape[0],)


def _global_module(node: core.GlobalAvgPool, shape: Shape, out: Shape) -> Any:
    from torch import nn

    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


# ---- the papers' layers: Dirac conv, highway ----------------------------------------------------


def _dirac_shape(node: core.Dirac, shape: Shape) -> Shape:
    return conv_shape(node.conv, shape)


def _dirac_cost(node: core.Dirac, shape: Shape, out: Shape) -> Cost:
    conv = conv_cost(node.conv, shape, out)
    return Cost(conv.params + 2, conv.weights, conv.macs)  # + the scalars a and b


def _dirac_module(node: core.Dirac, shape: Shape, out: Shape) -> Any:
    from archlang.layers.dirac import DiracConv2d

    c = node.conv
    return DiracConv2d(shape[0], c.out, c.kernel, c.stride, c.pad, node.a_init, node.b_init)


def _highway_shape(node: core.Highway, shape: Shape) -> Shape:
    if isinstance(node.h, core.Conv):
        out = conv_shape(node.h, shape)
    elif len(shape) != 1:
        raise error(node, f"a linear highway layer needs a flat input, got {shape_text(shape)}",
                    hint="add flatten before it")
    else:
        out = (node.h.out,)
    if out != shape:
        raise error(node, f"a highway layer must keep its input shape ({shape_text(shape)}), but H gives "
                    f"{shape_text(out)}", hint="change the width with a plain layer before the highway layers")
    return out


def _highway_cost(node: core.Highway, shape: Shape, out: Shape) -> Cost:
    h = conv_cost(node.h, shape, out) if isinstance(node.h, core.Conv) else linear_cost(node.h, shape, out)
    # T is shaped like H and always has a bias (it carries the negative initialisation).
    t_bias = 0 if node.h.bias else out[0]
    return Cost(2 * h.params + t_bias, 2 * h.weights, 2 * h.macs)


def _highway_module(node: core.Highway, shape: Shape, out: Shape) -> Any:
    from archlang.layers.highway import Highway

    make = conv_module if isinstance(node.h, core.Conv) else linear_module
    t_node = node.h.model_copy(update={"bias": True})
    return Highway(make(node.h, shape, out), make(t_node, shape, out), node.act, node.bias_init)


LEAVES: dict[type, Leaf] = {
    core.Input: Leaf(_input_shape, _unreachable),
    core.Conv: Leaf(conv_shape, conv_module, conv_cost, _conv_label),
    core.Linear: Leaf(_linear_shape, linear_module, linear_cost,
                      lambda node, shape, out: f"linear, {shape[0]}->{node.out}"),
    core.BatchNorm: Leaf(_same, _bn_module, lambda node, shape, out: Cost(2 * shape[0]),
                         lambda node, shape, out: f"batchnorm({shape[0]})"),
    core.ReLU: _simple("ReLU"),
    core.ReLU6: _simple("ReLU6"),
    core.Tanh: _simple("Tanh"),
    core.Sigmoid: _simple("Sigmoid"),
    core.Identity: _simple("Identity", outputs=0),
    core.Dropout: Leaf(_same, lambda node, shape, out: _torch_module("Dropout", node.p),
                       label=lambda node, shape, out: f"dropout({node.p:g})"),
    core.NCReLU: Leaf(lambda node, shape: (2 * shape[0], *shape[1:]), _ncrelu_module),
    core.Flatten: Leaf(_flatten_shape, lambda node, shape, out: _torch_module("Flatten"), outputs=0),
    core.MaxPool: Leaf(pool_shape, _pool_module, label=_pool_label),
    core.AvgPool: Leaf(pool_shape, _pool_module, label=_pool_label),
    core.AdaptiveAvgPool: Leaf(_adaptive_shape, lambda node, shape, out: _torch_module("AdaptiveAvgPool2d", node.size),
                               label=lambda node, shape, out: f"adaptive_avgpool {node.size}x{node.size}"),
    core.GlobalAvgPool: Leaf(_global_shape, _global_module),
    core.Dirac: Leaf(_dirac_shape, _dirac_module, _dirac_cost,
                     lambda node, shape, out: f"dirac conv {node.conv.kernel}x{node.conv.kernel}, "
                     f"{shape[0]}->{node.conv.out}"),
    core.Highway: Leaf(_highway_shape, _highway_module, _highway_cost,
                       lambda node, shape, out: f"highway {node.h.kind} ({node.act}), H and T", outputs=4),
}
