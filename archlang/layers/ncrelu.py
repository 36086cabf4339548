"""NCReLU (DiracNets sec. 2.2): keep both signs of the input as separate channels."""

from __future__ import annotations

import torch
from torch import nn


class NCReLU(nn.Module):
    """cat(relu(x), -relu(-x)) along channels; doubles the channel count, loses no information."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x.clamp(min=0), x.clamp(max=0)), dim=1)
