"""Many copies of one network trained in one process (seeds, or a recipe sweep over one architecture).

    model = GroupedModel.from_ir(compiled.network, seeds=[0, 1, 2], init=lambda m, i: apply_init(m, recipes[i]))
    optimizer = grouped_optimizer(model, [CopyHyper.from_recipe(r, settings=parameter_settings(single, r)) for r in recipes])
    logits = model(x)                        # x: (G, B, *input), copy g's batch in x[g]
    grouped_loss(logits, y).sum().backward()  # y: (G, B)
    optimizer.step(); optimizer.zero_grad()
    states = split_state(model)              # copy i's ordinary state_dict
"""

from __future__ import annotations

from collections.abc import Sequence

from archlang.grouped.hyper import CopyHyper
from archlang.grouped.model import SUPPORTED_KINDS, GroupedModel, check_supported, grouped_loss
from archlang.grouped.optim import GroupedOptimizer
from archlang.grouped.state import merge_states, split_state


def grouped_optimizer(model: GroupedModel, hypers: Sequence[CopyHyper]) -> GroupedOptimizer:
    """One optimizer for all copies; hypers[i] are copy i's settings (its recipe's)."""
    if len(hypers) != model.copies:
        raise ValueError(f"{model.copies} copies but {len(hypers)} hyperparameter sets")
    return GroupedOptimizer(model, hypers)


def compile_group(model: GroupedModel, optimizer: GroupedOptimizer) -> None:
    """--compile for a group: the model's chunks of identical blocks and NAdam's update, each compiled
    once (archlang.regional); evaluation stays eager."""
    model.compile_blocks()
    optimizer.compile_step()


__all__ = ["SUPPORTED_KINDS", "CopyHyper", "GroupedModel", "GroupedOptimizer", "check_supported", "compile_group",
           "grouped_loss", "grouped_optimizer", "merge_states", "split_state"]
