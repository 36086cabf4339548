"""Highway layer (Srivastava et al. 2015, eq. 3): y = H(x)·T(x) + x·(1 - T(x))."""

from __future__ import annotations

import torch
from torch import nn


class Highway(nn.Module):
    """H and T are separate layers of the same shape; T = sigmoid, its bias starts negative
    so that the layer initially carries its input through (Highway sec. 2.2)."""

    def __init__(self, h: nn.Module, t: nn.Module, activation: str = "relu", bias_init: float = -2.0) -> None:
        super().__init__()
        self.h = h
        self.t = t
        self.activation = activation
        with torch.no_grad():
            self.t.bias.fill_(bias_init)  # type: ignore[union-attr]
        self._act = torch.relu if activation == "relu" else torch.tanh

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.t(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.transform_gate(x)
        return self._act(self.h(x)) * t + x * (1 - t)
