"""Families: the papers' networks as one call each, expanded into core nodes; one file per family.

Each family validates its own arguments (depth rules, widths) and `expand()` returns a
`seq(input(...), ...)` of core nodes; shapes and counts are then inferred on that.
A new family is one file here with a `Family` subclass, added to `REGISTRY` (timm-style: the
spec name is the registry key, the class its implementation).
"""

from __future__ import annotations

from archlang.ir.families.common import MAX_DEPTH, BlockType, Family
from archlang.ir.families.diracnet import Diracnet
from archlang.ir.families.highway_cnn import HighwayCnn
from archlang.ir.families.mlp import Mlp
from archlang.ir.families.preact_resnet import PreactResnet
from archlang.ir.families.resnet import Resnet
from archlang.ir.families.wrn import Wrn

# Spec name -> implementation, in the order `archlang` lists families.
REGISTRY: dict[str, type[Family]] = {
    m.model_fields["kind"].default: m for m in (Wrn, PreactResnet, Resnet, Diracnet, Mlp, HighwayCnn)
}
FAMILIES: tuple[type[Family], ...] = tuple(REGISTRY.values())

__all__ = ["FAMILIES", "MAX_DEPTH", "REGISTRY", "BlockType", "Diracnet", "Family", "HighwayCnn", "Mlp",
           "PreactResnet", "Resnet", "Wrn"]
