"""The discriminated unions over node kinds, and the table from spec names to node models."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from archlang.ir import core, families
from archlang.ir.base import IRNode

CoreNode = Annotated[
    core.Input | core.Conv | core.Linear | core.BatchNorm | core.ReLU | core.Tanh | core.Sigmoid | core.NCReLU | core.Identity | core.Flatten | core.Dropout | core.MaxPool | core.AvgPool | core.GlobalAvgPool | core.Seq | core.Repeat | core.Residual | core.Dirac | core.Highway | core.Gated,
    Field(discriminator="kind"),
]

AnyNode = Annotated[
    core.Input | core.Conv | core.Linear | core.BatchNorm | core.ReLU | core.Tanh | core.Sigmoid | core.NCReLU | core.Identity | core.Flatten | core.Dropout | core.MaxPool | core.AvgPool | core.GlobalAvgPool | core.Seq | core.Repeat | core.Residual | core.Dirac | core.Highway | core.Gated | families.BlockType | families.Wrn | families.PreactResnet | families.Resnet | families.Diracnet | families.Mlp | families.HighwayCnn,
    Field(discriminator="kind"),
]

_NAMESPACE = {"CoreNode": CoreNode, "AnyNode": AnyNode}
for _model in (core.Seq, core.Repeat, core.Residual, core.Gated, *families.FAMILIES):
    _model.model_rebuild(_types_namespace=_NAMESPACE)

_CORE_MODELS: tuple[type[IRNode], ...] = (
    core.Input, core.Conv, core.Linear, core.BatchNorm, core.ReLU, core.Tanh, core.Sigmoid, core.NCReLU,
    core.Identity, core.Flatten, core.Dropout, core.MaxPool, core.AvgPool, core.GlobalAvgPool, core.Seq,
    core.Repeat, core.Residual, core.Dirac, core.Highway, core.Gated,
)

# Spec spelling -> model. The kind names themselves, plus a few aliases users reach for.
NODE_MODELS: dict[str, type[IRNode]] = {
    m.model_fields["kind"].default: m for m in (*_CORE_MODELS, families.BlockType, *families.FAMILIES)
}
ALIASES: dict[str, str] = {"bn": "batchnorm", "sequence": "seq", "gap": "global_avgpool"}
FAMILY_NAMES: tuple[str, ...] = tuple(m.model_fields["kind"].default for m in families.FAMILIES)


def model_for(name: str) -> type[IRNode] | None:
    return NODE_MODELS.get(ALIASES.get(name, name))


def takes_no_arguments(model: type[IRNode]) -> bool:
    """Whether a bare name (`relu`, `bn`) can stand for a call without arguments."""
    return all(not f.is_required() for n, f in model.model_fields.items() if n != "kind")
