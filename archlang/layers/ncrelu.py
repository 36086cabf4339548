"""NCReLU (DiracNets sec. 2.2): keep both signs of the input as separate channels."""

from __future__ import annotations

import torch
from torch import nn


class NCReLU(nn.Module):
    """cat(relu(x), -relu(-x)) along channels; doubles the channel count, loses no information."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((torch.relu(x), -torch.relu(-x)), dim=1)
