"""Residual blocks, optionally gated: post(g·body(pre(x)) + shortcut)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlang.layers.gate import ResidualGate


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A: subsample by the stride and pad the new channels with zeros (no parameters)."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class Residual(nn.Module):
    """`pre` is shared by the body and a non-identity shortcut, as in the WRN authors' code;
    an identity shortcut carries the raw input. A gate, when present, scales the body only."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, pre: nn.Module | None = None,
                 post: nn.Module | None = None, gate: ResidualGate | None = None) -> None:
        super().__init__()
        self.pre = pre
        self.body = body
        self.shortcut = shortcut
        self.post = post
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.pre(x) if self.pre is not None else x
        y = self.body(o)
        if self.gate is not None:
            y = self.gate() * y
        y = y + (self.shortcut(o) if self.shortcut is not None else x)
        return self.post(y) if self.post is not None else y
