"""Where each IR node of a network sits in its built module, at any depth.

Every analysis that finds layers (pruning, lesioning, folding) walks the IR through this one
module, so no analysis stops at the top level: a block inside `repeat`, a `let` definition,
a residual body, a concat/add branch or a gate is found like a top-level one. The names are the
ones the container kinds of archlang.kinds give their children (nn.Sequential indices, Residual's
pre/body/shortcut/post, GatedLayer's layer, the branches' indices), so a site's path is its key in
`model.named_modules()` and the prefix of its weights in the state dict; test_analysis checks
every site against a built module. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from archlang import infer
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.kinds import module_name

Shape = infer.Shape


def children(node: IRNode) -> list[tuple[str, IRNode]]:
    """The IR children of `node`, each under the name build gives its module (in build order)."""
    if isinstance(node, core.Seq):
        return [(str(i), item) for i, item in enumerate(node.items)]
    if isinstance(node, core.Repeat):  # n modules, all built from the one block
        return [(str(i), node.block) for i in range(node.n)]
    if isinstance(node, core.Concat | core.Add):
        return [(str(i), branch) for i, branch in enumerate(node.branches)]
    if isinstance(node, core.Gated) and isinstance(node.block, core.Residual):
        return children(node.block)  # a gated residual is one Residual module holding a gate
    if isinstance(node, core.Gated) and isinstance(node.block, IRNode):
        return [("layer", node.block)]
    if isinstance(node, core.Residual):
        parts = [("pre", node.pre), ("body", node.body), ("shortcut", node.shortcut), ("post", node.post)]
        return [(name, part) for name, part in parts if isinstance(part, IRNode)]
    return []


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def top_level(network: core.Seq) -> list[tuple[str, IRNode]]:
    """The network's items after input(...), under their module names ('0' is the first layer)."""
    return [(module_name(i), item) for i, item in enumerate(network.items) if i > 0]


@dataclass(frozen=True)
class Site:
    path: str  # module path in the built network
    node: IRNode
    in_shape: Shape
    out_shape: Shape

    @property
    def kind(self) -> str:
        return self.node.kind  # type: ignore[attr-defined]

    @property
    def keeps_shape(self) -> bool:
        return self.in_shape == self.out_shape


def sites(network: core.Seq) -> Iterator[Site]:
    """Every node of the network with its module path and shapes, outermost first, in build order."""
    out_shapes = {layer.path: layer.out_shape for layer in infer.summarize(network).layers}
    shape: Shape = tuple(network.items[0].shape)  # type: ignore[union-attr]
    for path, item in top_level(network):
        yield from _sites(item, path, shape, out_shapes)
        shape = out_shapes[path]


def _sites(node: IRNode, path: str, shape: Shape, out_shapes: dict[str, Shape]) -> Iterator[Site]:
    yield Site(path, node, shape, out_shapes[path])
    for name, child, child_in in _child_inputs(node, path, shape, out_shapes):
        yield from _sites(child, join(path, name), child_in, out_shapes)


def _child_inputs(node: IRNode, path: str, shape: Shape,
                  out_shapes: dict[str, Shape]) -> list[tuple[str, IRNode, Shape]]:
    """Each child with the shape it receives: a chain in seq/repeat; every branch of concat/add sees
    the input; in a residual, pre feeds the body and a shortcut node, and post receives the sum."""
    named = children(node)
    if isinstance(node, core.Concat | core.Add):
        return [(name, child, shape) for name, child in named]
    if isinstance(node, core.Residual) or (isinstance(node, core.Gated) and isinstance(node.block, core.Residual)):
        pre_out = out_shapes.get(join(path, "pre"), shape)
        body_out = out_shapes.get(join(path, "body"), shape)
        inputs = {"pre": shape, "body": pre_out, "shortcut": pre_out, "post": body_out}
        return [(name, child, inputs[name]) for name, child in named]
    result = []
    for name, child in named:
        result.append((name, child, shape))
        shape = out_shapes[join(path, name)]
    return result


def replace(network: core.Seq, replacements: dict[str, IRNode]) -> core.Seq:
    """The network with the node at each path replaced. A `repeat` on the way is unrolled into a
    `seq` of its copies first: it builds to the same modules under the same names, so every
    other weight keeps its path."""
    items = [network.items[0]] + [_replace(item, path, replacements) for path, item in top_level(network)]
    return core.Seq(items=items)


def _replace(node: IRNode, path: str, replacements: dict[str, IRNode]) -> IRNode:
    if path in replacements:
        return replacements[path]
    if not any(p.startswith(path + ".") for p in replacements):
        return node
    if isinstance(node, core.Seq | core.Repeat):
        return core.Seq(items=[_replace(child, join(path, name), replacements) for name, child in children(node)])
    if isinstance(node, core.Concat | core.Add):
        return node.model_copy(update={"branches": [_replace(child, join(path, name), replacements)
                                                    for name, child in children(node)]})
    if isinstance(node, core.Gated) and isinstance(node.block, core.Residual):
        return node.model_copy(update={"block": _replace_fields(node.block, path, replacements)})
    if isinstance(node, core.Gated) and isinstance(node.block, IRNode):
        return node.model_copy(update={"block": _replace(node.block, join(path, "layer"), replacements)})
    if isinstance(node, core.Residual):
        return _replace_fields(node, path, replacements)
    return node


def _replace_fields(node: core.Residual, path: str, replacements: dict[str, IRNode]) -> core.Residual:
    update = {name: _replace(child, join(path, name), replacements) for name, child in children(node)}
    return node.model_copy(update=update)
