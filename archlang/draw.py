"""`archlang draw`: a picture of a network, through graphviz.

Layers are boxes (with their parameters), the tensor shapes label the edges, a residual block is a
frame whose shortcut joins the body at a "+" node, and runs of identical blocks (and repeat(n, ...))
are drawn once in a frame that gives their count. The graph is built with the `graphviz` package
(the [draw] extra) and rendered by graphviz's `dot`; without `dot` the .dot file is written instead.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archlang.catalog import label
from archlang.compiler import Compiled
from archlang.errors import ArchlangError, shorten
from archlang.extras import require
from archlang.fileio import atomic_write_bytes, atomic_write_text
from archlang.infer import Layer, shape_text
from archlang.ir import core
from archlang.ir.base import IRNode

if TYPE_CHECKING:
    import graphviz

FORMATS = ("svg", "png", "pdf")
# dot lays out a few thousand boxes in seconds; far more is minutes and a picture no one can read.
MAX_BOXES = 2_000
_FONT = "Helvetica"
_COLOURS = {"conv": "#dbe9f6", "dirac": "#dbe9f6", "linear": "#e3f1dc", "highway": "#fbe3c8",
            "batchnorm": "#f2f2f2", "projection": "#dbe9f6", "gate": "#f6dbe9"}


def _params(n: int) -> str:
    return f"{n:,} params" if n else ""


def _runs(keys: list[Any]) -> list[tuple[int, int]]:
    """(first index, count) of each run of consecutive equal keys."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i - start))
            start = i
    return runs


class _Drawer:
    """Walks the expanded IR beside its summary rows (by path), adding nodes and edges to a graph."""

    def __init__(self, graph: graphviz.Digraph, layers: dict[str, Layer], max_depth: int | None) -> None:
        self.graph = graph
        self.layers = layers
        self.max_depth = max_depth
        self.shapes: dict[str, str] = {}
        self.ids = itertools.count()

    def box(self, g: Any, label: str, shape: str, kind: str = "", **attrs: str) -> str:
        name = f"n{next(self.ids)}"
        if len(self.shapes) >= MAX_BOXES:
            raise ArchlangError(f"the drawing would have more than {MAX_BOXES:,} boxes",
                                hint="--depth 0 draws each top-level block as one box")
        colour = _COLOURS.get(kind, "white")
        g.node(name, label, shape=attrs.pop("node_shape", "box"), style="rounded,filled", fillcolor=colour, **attrs)
        self.shapes[name] = shape
        return name

    def edge(self, tail: str, head: str, **attrs: str) -> None:
        # Edges go to the root graph: a node named in a frame's edge would be drawn inside that frame.
        self.graph.edge(tail, head, label=f" {self.shapes.get(tail, '')}", **attrs)

    def frame(self, g: Any, label: str, dashed: bool = False) -> Any:
        sub = g.subgraph(name=f"cluster_{next(self.ids)}")
        return sub, {"label": label, "style": "rounded,dashed" if dashed else "rounded", "labeljust": "l",
                     "fontname": _FONT, "color": "#888888"}

    def draw(self, g: Any, node: IRNode, path: str, depth: int, prev: str) -> str:
        row = self.layers[path]
        folded = self.max_depth is not None and depth >= self.max_depth and not row.leaf
        if row.leaf or folded:
            text = row.label if row.leaf else f"{row.label} (inside not drawn)"
            label = "\n".join(part for part in (text, _params(row.params)) if part)
            name = self.box(g, label, shape_text(row.out_shape), row.kind)
            self.edge(prev, name)
            return name
        if isinstance(node, core.Seq):
            return self.chain(g, node.items, path, depth, prev)
        if isinstance(node, core.Repeat):
            return self.repeated(g, node.block, node.n, f"{path}.0", depth + 1, prev, row.params)
        if isinstance(node, core.Residual):
            return self.residual(g, node, path, depth, prev, row.label)
        if isinstance(node, core.Gated):
            return self.gated(g, node, path, depth, prev)
        if isinstance(node, (core.Concat, core.Add)):
            return self.branches(g, node, path, depth, prev, row)
        raise AssertionError(f"no drawing for {row.kind}")  # every container kind of the walker is above

    def chain(self, g: Any, items: list[IRNode], path: str, depth: int, prev: str) -> str:
        paths = [f"{path}.{i}" if path else str(i) for i in range(len(items))]
        # Equal IR is not enough: a block's first use may differ in what it gets (WRN's widening one
        # has a projection), so a run also needs equal shapes in and out and equal parameters.
        shapes_in = [self.shapes[prev]] + [shape_text(self.layers[p].out_shape) for p in paths[:-1]]
        keys = [(item.model_dump_json(), shape, self.layers[p].params, self.layers[p].out_shape)
                for item, shape, p in zip(items, shapes_in, paths)]
        for start, count in _runs(keys):
            if count == 1:
                prev = self.draw(g, items[start], paths[start], depth + 1, prev)
            else:
                total = sum(self.layers[p].params for p in paths[start:start + count])
                prev = self.repeated(g, items[start], count, paths[start], depth + 1, prev, total)
        return prev

    def repeated(self, g: Any, block: IRNode, count: int, path: str, depth: int, prev: str, params: int) -> str:
        sub, attrs = self.frame(g, f"× {count}   {_params(params)}")
        with sub as c:
            c.attr(**attrs, penwidth="2")
            return self.draw(c, block, path, depth, prev)

    def branches(self, g: Any, node: core.Concat | core.Add, path: str, depth: int, prev: str, row: Layer) -> str:
        """Each branch from the same input, joined in one circle: 'cat' on channels or '+'."""
        sub, attrs = self.frame(g, f"{row.label}   {_params(row.params)}", dashed=True)
        with sub as c:
            c.attr(**attrs)
            ends = [self.draw(c, branch, f"{path}.{i}", depth + 1, prev) for i, branch in enumerate(node.branches)]
            join = self.box(c, "cat" if isinstance(node, core.Concat) else "+", shape_text(row.out_shape),
                            node_shape="circle", width="0.4", fixedsize="true")
        for end in ends:
            self.edge(end, join)
        return join

    def _join(self, g: Any, body: str, shortcut: str, label: str, dashed: bool) -> str:
        join = self.box(g, "+", self.shapes[body], node_shape="circle", width="0.3", fixedsize="true")
        self.edge(body, join)
        self.graph.edge(shortcut, join, label=f" {label}", style="dashed" if dashed else "solid", color="#555555")
        return join

    def residual(self, g: Any, node: core.Residual, path: str, depth: int, prev: str, title: str,
                 gate: str | None = None) -> str:
        sub, attrs = self.frame(g, f"{title}   {_params(self.layers[path].params)}", dashed=True)
        with sub as c:
            c.attr(**attrs)
            pre = self.draw(c, node.pre, f"{path}.pre", depth + 1, prev) if node.pre is not None else prev
            body = self.draw(c, node.body, f"{path}.body", depth + 1, pre)
            if gate is not None:
                body = self.gate_box(c, gate, body)
            short, label = self.shortcut(c, node, path, depth, prev, pre)
            out = self._join(c, body, short, label, dashed=short in (prev, pre))
            if node.post is not None:
                out = self.draw(c, node.post, f"{path}.post", depth + 1, out)
        return out

    def shortcut(self, g: Any, node: core.Residual, path: str, depth: int, prev: str, pre: str) -> tuple[str, str]:
        """Where the shortcut starts, and its edge label: identity of x, or a layer of pre(x)."""
        if isinstance(node.shortcut, IRNode):
            return self.draw(g, node.shortcut, f"{path}.shortcut", depth + 1, pre), ""
        projection = self.layers.get(f"{path}.shortcut")
        if projection is not None:
            name = self.box(g, f"{projection.label}\n{_params(projection.params)}", shape_text(projection.out_shape),
                            "projection")
            self.edge(pre, name)
            return name, ""
        if node.shortcut == "zeropad" and self.shapes[prev] != shape_text(self.layers[path].out_shape):
            return pre, "zero-padded"  # like a projection, it takes pre(x); only the identity takes raw x
        return prev, "x"

    def gate_box(self, g: Any, text: str, body: str) -> str:
        name = self.box(g, text, self.shapes[body], "gate")
        self.edge(body, name)
        return name

    def gated(self, g: Any, node: core.Gated, path: str, depth: int, prev: str) -> str:
        if isinstance(node.block, core.Residual):
            return self.residual(g, node.block, path, depth, prev, "gated residual", gate="× g(k)\n1 param")
        sub, attrs = self.frame(g, f"gated   {_params(self.layers[path].params)}", dashed=True)
        with sub as c:
            c.attr(**attrs)
            body = self.gate_box(c, "× g(k)\n1 param", self.draw(c, node.block, f"{path}.layer", depth + 1, prev))
            return self._join(c, body, prev, "(1 - g(k)) x", dashed=True)


def graph(compiled: Compiled, max_depth: int | None = None) -> graphviz.Digraph:
    """The graphviz graph of a compiled network."""
    graphviz = require("graphviz", "archlang draw")
    title = label(compiled.source) or shorten(compiled.canonical, 100)
    g = graphviz.Digraph("network", graph_attr={"rankdir": "TB", "fontname": _FONT, "nodesep": "0.3",
                                                "ranksep": "0.3", "label": title,
                                                "labelloc": "t", "fontsize": "16"},
                         node_attr={"fontname": _FONT, "fontsize": "11"},
                         edge_attr={"fontname": _FONT, "fontsize": "9", "color": "#333333"})
    drawer = _Drawer(g, {layer.path: layer for layer in compiled.summary.layers}, max_depth)
    summary = compiled.summary
    start = drawer.box(g, f"input\n{shape_text(summary.input_shape)}", shape_text(summary.input_shape),
                       node_shape="oval")
    last = drawer.chain(g, compiled.network.items[1:], "", -1, start)
    end = drawer.box(g, f"output {shape_text(summary.output_shape)}\n{summary.params:,} params in all", "",
                     node_shape="oval")
    drawer.edge(last, end)
    return g


def draw(compiled: Compiled, output: Path, max_depth: int | None = None) -> tuple[Path, str]:
    """Write the picture to `output` (.svg/.png/.pdf, or .dot/.gv for the graph itself).

    Returns the file written and a note: without graphviz's `dot`, the .dot file and how to render it.
    """
    g = graph(compiled, max_depth)
    fmt = output.suffix.lstrip(".").lower()
    if fmt in ("dot", "gv"):
        atomic_write_text(output, g.source, "drawing")
        return output, ""
    if fmt not in FORMATS:
        raise ArchlangError(f"cannot draw to a .{fmt or '(no suffix)'} file", path=str(output),
                            hint="name the output net.svg, net.png, net.pdf or net.dot")
    if shutil.which("dot") is None:
        dot_file = output.with_suffix(".dot")
        atomic_write_text(dot_file, g.source, "drawing")
        return dot_file, (f"graphviz's dot is not installed, so this is the graph itself; render it with "
                          f"`dot -T{fmt} {dot_file} -o {output}` (dot comes with graphviz: apt-get install "
                          f"graphviz, brew install graphviz)")
    atomic_write_bytes(output, g.pipe(format=fmt), "drawing")
    return output, ""
