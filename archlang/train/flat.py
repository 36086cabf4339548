"""One flat tensor per parameter group, for optimizers torch has no fused kernel for (NAdam).

The 100-layer FC nets have ~450 small parameters; torch's foreach NAdam spends most of a step
on per-tensor overhead (108 ms of a ~250 ms step, single thread). Here every parameter of a
group becomes a view into one flat tensor, and the optimizer (torch's own NAdam, unchanged)
updates that one tensor: same algorithm, same elementwise arithmetic, a handful of kernels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FlatGroups:
    """Re-homes each group's parameters into one flat leaf tensor and gathers their gradients there."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        self.members: list[list[nn.Parameter]] = []
        self.flats: list[nn.Parameter] = []
        for group in groups:
            params = list(group["params"])
            flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
            offset = 0
            for p in params:
                n = p.numel()
                # The module keeps its own Parameter objects; only their storage moves into `flat`.
                p.data = flat.data[offset : offset + n].view_as(p)
                offset += n
            self.members.append(params)
            self.flats.append(flat)

    def groups(self, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**group, "params": [flat]} for group, flat in zip(groups, self.flats)]

    def gather_grads(self) -> None:
        """Concatenate the parameters' gradients into the flat gradient, and clear theirs for the next step."""
        for flat, params in zip(self.flats, self.members):
            flat.grad = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                                   for p in params])
            for p in params:
                p.grad = None


def flat_optimizer(cls: type[torch.optim.Optimizer], groups: list[dict[str, Any]], **kwargs: Any) -> torch.optim.Optimizer:
    """`cls` over flat copies of the groups; gradients are gathered just before each step."""
    flat = FlatGroups(groups)
    optimizer = cls(flat.groups(groups), **kwargs)
    optimizer.register_step_pre_hook(lambda _opt, _args, _kwargs: flat.gather_grads())
    optimizer.flat_groups = flat  # type: ignore[attr-defined]
    return optimizer
