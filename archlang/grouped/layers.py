"""Layers of G copies of one network, computed together.

Every parameter and buffer has the copies on a leading axis of length G, under the single
layer's name, so copy i's state_dict is `{name: tensor[i]}` (state.py). Two activation layouts,
told apart by rank, keep every op free of copies:

- features, 3-D (G, F, B): a linear layer is one batched matmul W (G, O, I) @ x (G, I, B), and
  batch norm sees (1, G*F, B), i.e. G*F channels each normalised over its copy's batch (in
  training computed as a group norm, one channel per group: see GBatchNorm._train_features);
- images, 4-D (B, G*C, H, W): a conv is a grouped conv (groups=G), batch norm and pooling act on
  G*C channels, which is exactly each copy's C channels side by side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlang.layers.residual import Residual


def is_features(x: torch.Tensor) -> bool:
    return x.dim() == 3


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])


class GLinear(nn.Module):
    """G linear layers: y_g = W_g x_g + b_g on (G, I, B) activations."""

    def __init__(self, singles: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(_stacked([m.weight for m in singles]))
        self.bias = nn.Parameter(_stacked([m.bias for m in singles])) if singles[0].bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(self.weight, x)
        return torch.baddbmm(self.bias.unsqueeze(-1), self.weight, x)


class GConv2d(nn.Module):
    """G convolutions as one grouped convolution on (B, G*C, H, W)."""

    def __init__(self, singles: list[nn.Conv2d]) -> None:
        super().__init__()
        first = singles[0]
        if first.groups != 1 or first.dilation != (1, 1) or first.padding_mode != "zeros":
            raise TypeError(f"no grouped form of {first!r}")  # the builder makes none of these
        self.stride, self.padding = first.stride, first.padding
        self.weight = nn.Parameter(_stacked([m.weight for m in singles]))
        self.bias = nn.Parameter(_stacked([m.bias for m in singles])) if first.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, o = self.weight.shape[:2]
        bias = self.bias.view(-1) if self.bias is not None else None
        return F.conv2d(x, self.weight.view(g * o, *self.weight.shape[2:]), bias, self.stride, self.padding,
                        groups=g)


class GBatchNorm(nn.Module):
    """G batch norms as one over the G*C channels; running statistics are (G, C) buffers."""

    def __init__(self, singles: list[nn.modules.batchnorm._BatchNorm]) -> None:
        super().__init__()
        first = singles[0]
        if any(m.momentum != first.momentum or m.eps != first.eps for m in singles):
            raise ValueError("the copies' batch norms differ in momentum or eps")  # one spec: never
        self.momentum, self.eps = first.momentum, first.eps
        self.weight = nn.Parameter(_stacked([m.weight for m in singles]))
        self.bias = nn.Parameter(_stacked([m.bias for m in singles]))
        self.register_buffer("running_mean", _stacked([m.running_mean for m in singles]).clone())
        self.register_buffer("running_var", _stacked([m.running_var for m in singles]).clone())
        self.register_buffer("num_batches_tracked", _stacked([m.num_batches_tracked for m in singles]).clone())
        self._scaled_by: tuple[GGate, ...] = ()  # a tuple: the gate stays registered only where it lives
        # Set by GroupedModel: this forward's moments wait in `_pending` for update_running_stats.
        self.defer_stats = False
        self._pending: tuple[torch.Tensor, torch.Tensor, float, int] | None = None

    def scale_by(self, gate: GGate) -> None:
        """Multiply the output by the gate's g per copy, folded into the affine parameters (see GFoldedResidual)."""
        self._scaled_by = (gate,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        weight, bias = self.weight, self.bias
        if self._scaled_by:
            g = self._scaled_by[0].values().unsqueeze(1)
            weight, bias = weight * g, bias * g
        if self.training and is_features(x) and x.shape[2] > 1:
            return self._train_features(x, weight.reshape(-1), bias.reshape(-1))
        flat = x.view(1, -1, x.shape[2]) if is_features(x) else x
        # The (G*C,) views share the buffers' storage, so batch_norm's in-place update lands in them.
        y = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1), weight.reshape(-1),
                         bias.reshape(-1), self.training, self.momentum, self.eps)
        return y.view_as(x)

    def _train_features(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Training-mode batch norm of (G, F, B) as group norm with one channel per group: the same
        normalisation (each channel over its copy's batch) and backward, but vectorised statistics.

        native batch_norm's statistics on this (1, G*F, B) layout are a scalar loop: 168-202 us
        forward for G*F = 400, B = 128 against 57-71 us here; forward + backward 364-473 against
        274-335 us (1 thread); in the G = 8 100-layer gated MLP the forward falls from 75 to 68 ms.
        Running statistics are updated as torch's are, from the same moments.
        """
        channels, batch = x.shape[0] * x.shape[1], x.shape[2]
        if torch.compiler.is_compiling():
            y, mean, rstd = self._traced_features(x, weight, bias)
        else:
            # (G, F, B) taken as N=1, C=G*F, HxW=B (the sizes are explicit): no view in or out to backpropagate
            y, mean, rstd = torch.native_group_norm(x.contiguous(), weight, bias, 1, channels, batch, channels,
                                                    self.eps)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked.view(-1)[0])
        self._pending = (mean.detach(), rstd.detach(), factor, batch)
        if not self.defer_stats:
            update_running_stats([self])
        return y

    def _traced_features(self, x: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same normalisation in plain ops, for torch.compile (whose shape check refuses the
        group-norm call above) to fuse with its neighbours; moments shaped as group norm's, (1, G*F)."""
        var, mean = torch.var_mean(x, dim=2, keepdim=True, correction=0)
        rstd = torch.rsqrt(var + self.eps)
        scale = rstd * weight.view(x.shape[0], x.shape[1], 1)
        y = (x - mean) * scale + bias.view(x.shape[0], x.shape[1], 1)
        return y, mean.view(1, -1), rstd.view(1, -1)


@torch.no_grad()
def update_running_stats(norms: list[GBatchNorm]) -> None:
    """Fold the pending moments of feature batch norms into their running statistics, as torch's
    batch norm does (mean and unbiased variance, exponential average by the momentum).

    A handful of foreach kernels for all layers at once: ten small ops per layer cost the
    100-layer gated MLP about 100 us each, as much as group norm saved over native batch_norm.
    """
    groups: dict[tuple[float, int], list[GBatchNorm]] = {}
    for norm in norms:
        if norm._pending is not None:
            groups.setdefault(norm._pending[2:], []).append(norm)  # type: ignore[arg-type]
    for (factor, batch), members in groups.items():
        means = [m._pending[0] for m in members]  # type: ignore[index]
        variances = torch._foreach_pow([m._pending[1] for m in members], -2)  # type: ignore[index]
        torch._foreach_sub_(variances, [m.eps for m in members])  # biased variance: rstd = (var + eps)^-1/2
        torch._foreach_mul_(variances, batch / (batch - 1))
        torch._foreach_lerp_([m.running_mean.view(1, -1) for m in members], means, factor)
        torch._foreach_lerp_([m.running_var.view(1, -1) for m in members], variances, factor)
        for m in members:
            m._pending = None


class GFlatten(nn.Module):
    """Images (B, G*C, H, W) to features (G, C*H*W, B); features pass through."""

    def __init__(self, copies: int) -> None:
        super().__init__()
        self.copies = copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_features(x):
            return x
        return x.reshape(x.shape[0], self.copies, -1).permute(1, 2, 0).contiguous()


class GGate(nn.Module):
    """G residual gates: k of shape (G,), g(k) = ReLU(k) per copy (Gated ResNets eq. 1).

    g comes out shaped to broadcast over the activations, (G, 1, 1) for features or one value per
    channel (1, G*C, 1, 1) for images, so archlang.layers' Residual and GatedLayer use it unchanged.
    """

    def __init__(self, singles: list[nn.Module], channels: int | None) -> None:
        super().__init__()
        self.k = nn.Parameter(_stacked([m.k for m in singles]))
        self.channels = channels

    def values(self) -> torch.Tensor:
        """g per copy, shape (G,)."""
        return torch.relu(self.k)

    def forward(self) -> torch.Tensor:
        g = self.values()
        if self.channels is None:
            return g.view(-1, 1, 1)
        return g.repeat_interleave(self.channels).view(1, -1, 1, 1)


class GFoldedResidual(Residual):
    """A gated Residual whose body ends in batch norm (and ReLU): g·ReLU(BN(z)) = ReLU(BN'(z)) with BN's
    weight and bias times g (g = ReLU(k) >= 0), so the gate costs no pass over the activations.

    Measured (1 thread, G = 8, 100-layer gated MLP): the broadcast multiply and its backward (two
    multiplies and a sum over the activations) were ~10% of the step. The gate stays registered
    here as `gate`, under the single network's name; the body's last GBatchNorm applies it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.pre(x) if self.pre is not None else x
        y = self.body(o) + (self.shortcut(o) if self.shortcut is not None else x)
        return self.post(y) if self.post is not None else y


def fold_gate(body: nn.Module, gate: GGate) -> bool:
    """Hand the gate to a grouped body's last batch norm when only a ReLU follows it; False if none."""
    if not isinstance(body, nn.Sequential) or len(body) == 0:
        return False
    last = body[-2] if isinstance(body[-1], nn.ReLU) and len(body) > 1 else body[-1]
    if not isinstance(last, GBatchNorm):
        return False
    last.scale_by(gate)
    return True


class GHighway(nn.Module):
    """y = H(x)·T(x) + x·(1 - T(x)) per copy (Highway eq. 3), H and T grouped layers."""

    def __init__(self, h: nn.Module, t: nn.Module, activation: str) -> None:
        super().__init__()
        self.h = h
        self.t = t
        self._act = torch.relu if activation == "relu" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x + T·(H - x), eq. 3 up to rounding, as one lerp: fewer passes over the activations (and
        # fewer saved) than H·T + x·(1 - T); measured 8% of the G = 8 49-layer highway MLP's step.
        return torch.lerp(x, self._act(self.h(x)), torch.sigmoid(self.t(x)))


class GZeroPad(nn.Module):
    """He et al.'s option A per copy: subsample, then zero channels after each copy's own."""

    def __init__(self, copies: int, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.copies, self.stride, self.extra_channels = copies, stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        b, gc, h, w = x.shape
        padded = F.pad(x.reshape(b, self.copies, gc // self.copies, h, w), (0, 0, 0, 0, 0, self.extra_channels))
        return padded.view(b, -1, h, w)
