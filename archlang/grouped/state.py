"""Between grouped and single: copy i's weights as an ordinary archlang state_dict, and a grouped
model from G such state dicts. The whole grouped state (model, optimizer, each copy's progress)
is checkpointed by archlang.runs.checkpoint (write_grouped, read_grouped), the one format."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from archlang.build import build
from archlang.grouped.model import GroupedModel, check_supported
from archlang.ir import core


def split_state(model: GroupedModel) -> list[dict[str, torch.Tensor]]:
    """Copy i's state_dict under the single network's names: load it into `build(network)`."""
    state = model.state_dict()
    return [{name: tensor[i].clone() for name, tensor in state.items()} for i in range(model.copies)]


def merge_states(network: core.Seq, states: Sequence[dict[str, torch.Tensor]]) -> GroupedModel:
    """The grouped model whose copy i holds states[i] (each an ordinary state_dict of `network`)."""
    check_supported(network)
    singles = []
    for state in states:
        single = build(network)
        single.load_state_dict(state)
        singles.append(single)
    return GroupedModel(singles, network.items[0].shape)  # type: ignore[union-attr]
