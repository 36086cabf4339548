"""The discriminated unions over node kinds, and the table from spec names to node models.

Both lists come from their one home: core kinds from `core.CORE_MODELS`, families from
`families.REGISTRY`. Importing archlang.ir (any of its modules) runs this file, which completes the
container models whose children are annotated with these unions.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from archlang.ir import core, families
from archlang.ir.base import IRNode

CoreNode = core.CoreNode
AnyNode = Annotated[Union[(*core.CORE_MODELS, families.BlockType, *families.FAMILIES)],
                    Field(discriminator="kind")]

_NAMESPACE = {"CoreNode": CoreNode, "AnyNode": AnyNode}
for _model in (*core.CORE_MODELS, *families.FAMILIES):
    if not _model.__pydantic_complete__:
        _model.model_rebuild(_types_namespace=_NAMESPACE)

# Spec spelling -> model. The kind names themselves, plus a few aliases users reach for.
NODE_MODELS: dict[str, type[IRNode]] = {
    m.model_fields["kind"].default: m for m in (*core.CORE_MODELS, families.BlockType, *families.FAMILIES)
}
ALIASES: dict[str, str] = {"bn": "batchnorm", "sequence": "seq", "gap": "global_avgpool"}
FAMILY_NAMES: tuple[str, ...] = tuple(families.REGISTRY)


def model_for(name: str) -> type[IRNode] | None:
    return NODE_MODELS.get(ALIASES.get(name, name))


def takes_no_arguments(model: type[IRNode]) -> bool:
    """Whether a bare name (`relu`, `bn`) can stand for a call without arguments."""
    return all(not f.is_required() for n, f in model.model_fields.items() if n != "kind")
