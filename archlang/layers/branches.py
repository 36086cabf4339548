"""Parallel branches on one input, joined by concatenation on channels or by a sum.

concat is DenseNet's x_l = H_l([x_0, ..., x_{l-1}]) (Huang et al. 2017, eq. 2) when a branch is the
identity, and the Inception module (Szegedy et al. 2015, Fig. 2) otherwise; add is a sum of branches
where residual(...) does not fit.
"""

from __future__ import annotations

import torch
from torch import nn


class Branches(nn.ModuleList):
    """Every branch sees the input; `join` is 'concat' (on dim 1) or 'add'. Children are named 0, 1, ..."""

    def __init__(self, branches: list[nn.Module], join: str) -> None:
        super().__init__(branches)
        if join not in ("concat", "add"):
            raise ValueError(f"join is 'concat' or 'add', not {join!r}")
        self.join = join

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self]
        if self.join == "concat":
            return torch.cat(outs, dim=1)
        total = outs[0]
        for out in outs[1:]:
            total = total + out
        return total

    def extra_repr(self) -> str:
        return f"join={self.join}"
