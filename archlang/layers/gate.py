"""The residual gate of Gated ResNets: one scalar k per block, g(k) = ReLU(k)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualGate(nn.Module):
    """Holds k; g(k) = max(k, 0) scales a block's residual branch (Savarese et al., eq. 1)."""

    def __init__(self, k_init: float = 1.0) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(float(k_init)))

    def forward(self) -> torch.Tensor:
        return torch.relu(self.k)

    def extra_repr(self) -> str:
        return f"k={self.k.item():.4g}"


class GatedLayer(nn.Module):
    """A gate around a shape-preserving plain layer: u = g(k)·f(x) + (1 - g(k))·x."""

    def __init__(self, layer: nn.Module, k_init: float = 1.0) -> None:
        super().__init__()
        self.layer = layer
        self.gate = ResidualGate(k_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate()
        return g * self.layer(x) + (1 - g) * x
