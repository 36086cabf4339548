"""The one table of node kinds: each core kind's output shape, cost (parameters, MACs) and module.

Inference (archlang.infer) and building (archlang.build) both read `entry(node)`; a new kind is a
model in archlang/ir/core.py (listed in CORE_MODELS) and one entry in layers.py or blocks.py here.
tests/test_nodes.py checks the table covers CORE_MODELS exactly.

Module names: inference's row paths are the built module's names (`model.get_submodule(path)`).
The top-level items of a network are nn.Sequential children named by `module_name(index)`.
"""

from __future__ import annotations

from archlang.errors import ArchlangError
from archlang.ir.base import IRNode
from archlang.kinds.base import Container, Cost, Kind, Leaf, Shape, Visitor, shape_text
from archlang.kinds.blocks import CONTAINERS, ShortcutPlan, shortcut_plan
from archlang.kinds.layers import LEAVES

KINDS: dict[type, Kind] = {**LEAVES, **CONTAINERS}


def entry(node: IRNode) -> Kind:
    """The table entry of a core node; anything else (a family, B(...)) is refused with why."""
    found = KINDS.get(type(node))
    if found is not None:
        return found
    from archlang.ir.families import Family

    if isinstance(node, Family):
        raise ArchlangError(f"{node.kind}(...) is a whole network and cannot be used inside another",  # type: ignore[attr-defined]
                            span=node.span, hint="build a custom network from core nodes (seq, conv, residual, ...)")
    if node.kind == "B":  # type: ignore[attr-defined]
        raise ArchlangError("a block type B(...) only means something as wrn(block=...)", span=node.span)
    raise ArchlangError(f"{node.kind} cannot appear here", span=node.span)  # type: ignore[attr-defined]


def module_name(index: int) -> str:
    """The module name of item `index` of a network `seq(input(...), item1, item2, ...)`.

    input(...) (index 0) builds no module, so item i is child str(i - 1) of the built nn.Sequential.
    Analyses (fold, prune, lesion) and saved checkpoints rely on this; nested rows extend it with
    the child names the containers give their visitors (`3.body.0`, `5.gate.k`).
    """
    if index < 1:
        raise ValueError("input(...) (index 0) has no module")
    return str(index - 1)


def item_index(name: str) -> int:
    """The inverse of module_name: the network item a top-level module name belongs to."""
    return int(name) + 1


__all__ = ["KINDS", "Container", "Cost", "Kind", "Leaf", "Shape", "ShortcutPlan", "Visitor", "entry", "item_index",
           "module_name", "shape_text", "shortcut_plan"]
