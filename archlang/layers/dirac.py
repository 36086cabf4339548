"""The Dirac-parameterised convolution of DiracNets (eq. 4-8): W = a·δ + b·W_norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dirac_delta(out_channels: int, in_channels: int, kernel: int) -> torch.Tensor:
    """The identity kernel; for unequal counts, the min(in, out) identity repeated along the larger side.

    With NCReLU inputs (in = 2·out) this gives δ = [I, I], so a·δ maps the two halves
    relu(x) and -relu(-x) back onto a·x (DiracNets sec. 2.1-2.2).
    """
    small = min(in_channels, out_channels)
    out_index = torch.arange(out_channels, device="cpu")
    in_index = torch.arange(in_channels, device="cpu")
    matches = (out_index[:, None] % small) == (in_index[None, :] % small)
    delta = torch.zeros(out_channels, in_channels, kernel, kernel, device="cpu")
    delta[:, :, kernel // 2, kernel // 2] = matches.to(delta.dtype)
    return delta


class DiracConv2d(nn.Module):
    """A conv whose weight is a·δ + b·W/‖W‖ with ‖·‖ per output filter and scalars a, b.

    δ is a buffer, so the identity part is never trained away; only a, b and W are learned.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, a_init: float = 5.0, b_init: float = 1e-3) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.a = nn.Parameter(torch.tensor(float(a_init)))
        self.b = nn.Parameter(torch.tensor(float(b_init)))
        self.register_buffer("delta", dirac_delta(out_channels, in_channels, kernel_size), persistent=False)
        nn.init.normal_(self.weight, std=0.1)  # as the authors' code; scale is irrelevant after normalising

    def combined_weight(self) -> torch.Tensor:
        normalized = F.normalize(self.weight.flatten(1), dim=1).view_as(self.weight)
        return self.a * self.delta + self.b * normalized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.combined_weight(), stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"
