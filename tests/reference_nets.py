"""Hand-written PyTorch networks, independent of archlang, following the authors' own code.

Each class is plain nn.Module code written from the papers and from the authors' code as
summarised in the shared CONVENTIONS.md:

- WRN: szagoruyko/wide-residual-networks (pytorch/resnet.py, models/wide-resnet.lua):
  pre-activation blocks, 1x1 projection of the *pre-activated* input where the width changes,
  identity (raw input) otherwise, no conv biases, dropout between convs after the ReLU.
- Pre-activation ResNets: KaimingHe/resnet-1k-layers resnet-pre-act.lua (bottleneck units,
  stride on the first 1x1 conv, projection of the pre-activated input).
- Gated ResNets (Savarese et al.): u = relu(k) * f_r(x) + shortcut(x), one scalar k per block.
- DiracNets: szagoruyko/diracnets diracnet.py before "v2": NCReLU -> conv with
  W_hat = a*delta + b*normalize(W) -> BN; delta repeated along the larger side.
- Highway: flukeskywalker/highway-networks prototxt: y = H(x)*T(x) + x*(1-T(x)).

Parameters are registered in the order the compiled archlang modules use (a residual block:
pre, body in order, shortcut projection, post, gate k; a Dirac conv: weight, a, b; a highway
layer: H weight, H bias, T weight, T bias), so weights can be copied positionally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Gate(nn.Module):
    """One scalar k; the block output is relu(k) * f_r(x) + x. A child module so that k is
    registered after the block's other parameters."""

    def __init__(self, k_init: float = 1.0) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(float(k_init)))

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return F.relu(self.k) * residual


# ---------------------------------------------------------------------------------------------
# Wide ResNets (WRN paper Table 1; B(M) blocks of section 2.1) and pre-activation ResNets
# ---------------------------------------------------------------------------------------------


class PreActBlock(nn.Module):
    """A pre-activation residual block with convs of the given kernel sizes and widths.

    widths[i] is the output width of conv i; the first conv carries the stride (as in
    wide_basic of wide-resnet.lua and the bottleneck of resnet-pre-act.lua).
    """

    def __init__(self, ni: int, widths: list[int], kernels: list[int], stride: int,
                 dropout: float = 0.0, gated: bool = False, shortcut: str = "projection",
                 preact: bool = True) -> None:
        super().__init__()
        no = widths[-1]
        self.ni, self.no, self.stride = ni, no, stride
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.shortcut_kind = shortcut
        layers: list[nn.Module] = []
        c = ni
        for i, (w, k) in enumerate(zip(widths, kernels)):
            # The first unit of He et al.'s pre-act nets has no BN-ReLU of its own: the stem's
            # activation feeds both paths (He et al. 2016, appendix; resnet-pre-act.lua).
            layers.append(nn.BatchNorm2d(c) if (i > 0 or preact) else nn.Identity())
            layers.append(nn.Conv2d(c, w, k, stride=stride if i == 0 else 1, padding=k // 2, bias=False))
            c = w
        self.layers = nn.ModuleList(layers)
        self.proj = None
        if (ni != no or stride != 1) and shortcut == "projection":
            self.proj = nn.Conv2d(ni, no, 1, stride=stride, bias=False)
        self.gate = Gate() if gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = F.relu(self.layers[0](x))  # x is already activated where layers[0] is the identity
        y = self.layers[1](o1)
        for i in range(2, len(self.layers), 2):
            y = F.relu(self.layers[i](y))
            if self.drop is not None:
                y = self.drop(y)
            y = self.layers[i + 1](y)
        if self.proj is not None:  # projection of the pre-activated input
            s = self.proj(o1)
        elif self.ni == self.no and self.stride == 1:
            s = x
        else:  # option A on the pre-activated input: subsample, then zero-pad the new channels
            s = o1[:, :, :: self.stride, :: self.stride]
            s = F.pad(s, (0, 0, 0, 0, 0, self.no - self.ni))
        if self.gate is not None:
            y = self.gate(y)
        return y + s


class CifarPreActNet(nn.Module):
    """conv3x3(3->16) [BN-ReLU], three groups of blocks, BN-ReLU, 8x8 average pool, Linear.

    stem_bn: He et al.'s pre-act ResNets activate the stem output once, before the first unit
    splits into two paths; WRN (wide-resnet.lua) gives every block its own BN-ReLU instead.
    """

    def __init__(self, group_blocks: list[list[tuple[int, list[int], list[int], int]]],
                 classes: int = 10, dropout: float = 0.0, gated: bool = False,
                 shortcut: str = "projection", stem_bn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16) if stem_bn else None
        blocks = []
        for g, group in enumerate(group_blocks):
            for i, (ni, widths, kernels, stride) in enumerate(group):
                preact = not (stem_bn and g == 0 and i == 0)
                blocks.append(PreActBlock(ni, widths, kernels, stride, dropout, gated, shortcut, preact))
        self.blocks = nn.Sequential(*blocks)
        last = group_blocks[-1][-1][1][-1]
        self.bn = nn.BatchNorm2d(last)
        self.fc = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.conv(x)
        if self.stem_bn is not None:
            o = F.relu(self.stem_bn(o))
        o = self.blocks(o)
        o = F.relu(self.bn(o))
        o = F.avg_pool2d(o, 8, 1, 0)
        return self.fc(o.flatten(1))


def wrn_ref(n: int, k: int, kernels=(3, 3), dropout: float = 0.0, gated: bool = False,
            classes: int = 10) -> CifarPreActNet:
    """WRN with N = n blocks per group, widening k, block B(kernels)."""
    widths = [16, 16 * k, 32 * k, 64 * k]
    groups = []
    for g in range(3):
        group = []
        for i in range(n):
            ni = widths[g] if i == 0 else widths[g + 1]
            stride = (1 if g == 0 else 2) if i == 0 else 1
            group.append((ni, [widths[g + 1]] * len(kernels), list(kernels), stride))
        groups.append(group)
    return CifarPreActNet(groups, classes, dropout, gated)


def preact_resnet_ref(depth: int, bottleneck: bool = False, gated: bool = False,
                      shortcut: str = "projection", classes: int = 10) -> CifarPreActNet:
    """He et al. 2016: basic depth 6n+2 (widths 16/32/64), bottleneck depth 9n+2 (64/128/256)."""
    if bottleneck:
        n = (depth - 2) // 9
        widths = [16, 64, 128, 256]
    else:
        n = (depth - 2) // 6
        widths = [16, 16, 32, 64]
    groups = []
    for g in range(3):
        group = []
        for i in range(n):
            ni = widths[g] if i == 0 else widths[g + 1]
            no = widths[g + 1]
            stride = (1 if g == 0 else 2) if i == 0 else 1
            if bottleneck:
                # resnet-pre-act.lua: the stride is on the first 1x1 conv of the unit
                group.append((ni, [no // 4, no // 4, no], [1, 3, 1], stride))
            else:
                group.append((ni, [no, no], [3, 3], stride))
        groups.append(group)
    return CifarPreActNet(groups, classes, 0.0, gated, shortcut, stem_bn=True)


# ---------------------------------------------------------------------------------------------
# DiracNets (Table 1; eq. 4-10)
# ---------------------------------------------------------------------------------------------


def ncrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.clamp(min=0), x.clamp(max=0)], dim=1)


def dirac_delta(ni: int, no: int, k: int) -> torch.Tensor:
    """Identity over min(ni, no) channels, repeated along the larger side (DiracNets sec. 2.1)."""
    n = min(ni, no)
    eye = torch.zeros(n, n, k, k, device="cpu")  # built on the CPU: meta-device eye/index_put are slow
    idx = torch.arange(n, device="cpu")
    eye[idx, idx, k // 2, k // 2] = 1.0
    return eye.repeat(max(no // ni, 1), max(ni // no, 1), 1, 1).to(torch.empty(0).device)


class DiracConv(nn.Module):
    """conv(ncrelu(x)) with weight a*delta + b*W/||W|| (per output filter); no bias."""

    def __init__(self, ni: int, no: int, k: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(no, 2 * ni, k, k) * 0.1)
        self.a = nn.Parameter(torch.tensor(5.0))
        self.b = nn.Parameter(torch.tensor(1e-3))
        self.register_buffer("delta", dirac_delta(2 * ni, no, k), persistent=False)
        self.k = k

    def effective_weight(self) -> torch.Tensor:
        w = self.weight
        wn = F.normalize(w.reshape(w.shape[0], -1), dim=1).view_as(w)
        return self.b * wn + self.a * self.delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(ncrelu(x), self.effective_weight(), padding=self.k // 2)


class DiracLayer(nn.Module):
    def __init__(self, ni: int, no: int) -> None:
        super().__init__()
        self.conv = DiracConv(ni, no)
        self.bn = nn.BatchNorm2d(no)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class DiracNetCifarRef(nn.Module):
    """Stem conv3x3(3->16k)-BN-ReLU; 3 groups of 2N Dirac layers; 2x2 max-pool between groups;
    8x8 average pool; Linear."""

    def __init__(self, depth: int, k: float, classes: int = 10) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = [int(16 * k), int(32 * k), int(64 * k)]
        self.conv = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        self.groups = nn.ModuleList()
        c = widths[0]
        for w in widths:
            layers = []
            for _ in range(2 * n):
                layers.append(DiracLayer(c, w))
                c = w
            self.groups.append(nn.Sequential(*layers))
        self.fc = nn.Linear(widths[2], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn(self.conv(x)))
        for i, g in enumerate(self.groups):
            if i > 0:
                o = F.max_pool2d(o, 2)
            o = g(o)
        o = F.avg_pool2d(o, 8)
        return self.fc(o.flatten(1))


# ---------------------------------------------------------------------------------------------
# Highway networks
# ---------------------------------------------------------------------------------------------


class HighwayLayer(nn.Module):
    """y = act(H(x)) * T(x) + x * (1 - T(x)), T = sigmoid(affine/conv); H registered before T."""

    def __init__(self, make, bias_init: float = -2.0, act: str = "relu") -> None:
        super().__init__()
        self.h = make()
        self.t = make()
        with torch.no_grad():
            self.t.bias.fill_(bias_init)
        self.act = torch.relu if act == "relu" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.t(x))
        return self.act(self.h(x)) * t + x * (1 - t)


class HighwayMnistCnnRef(nn.Module):
    """Highway Table 1: 5x5 conv 1->w (no padding) + ReLU, 2 highway, 3x3/2 max-pool (ceil),
    3 highway, 3x3/2 max-pool (ceil), 3 highway, 2x2/2 max-pool, Linear(w*3*3 -> 10)."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        w = width

        def hw():
            return HighwayLayer(lambda: nn.Conv2d(w, w, 3, padding=1), bias_init=-1.0)

        self.conv = nn.Conv2d(1, w, 5)
        self.s1 = nn.Sequential(hw(), hw())
        self.s2 = nn.Sequential(hw(), hw(), hw())
        self.s3 = nn.Sequential(hw(), hw(), hw())
        self.fc = nn.Linear(w * 9, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.conv(x))
        o = F.max_pool2d(self.s1(o), 3, 2, ceil_mode=True)
        o = F.max_pool2d(self.s2(o), 3, 2, ceil_mode=True)
        o = F.max_pool2d(self.s3(o), 2, 2)
        return self.fc(o.flatten(1))


# ---------------------------------------------------------------------------------------------
# Fully-connected MNIST nets (Gated ResNet sec. 3.1, Highway sec. 3.1)
# ---------------------------------------------------------------------------------------------


class DotBnAct(nn.Module):
    def __init__(self, ni: int, no: int, bn: bool = True, act: str = "relu") -> None:
        super().__init__()
        self.fc = nn.Linear(ni, no)
        self.bn = nn.BatchNorm1d(no) if bn else None
        self.act = torch.relu if act == "relu" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.fc(x)
        if self.bn is not None:
            o = self.bn(o)
        return self.act(o)


class FcResidualBlock(nn.Module):
    """Two Dot-BN-ReLU layers around an identity shortcut, optionally gated:
    u = relu(k) * f_r(x) + x."""

    def __init__(self, w: int, bn: bool = True, act: str = "relu", gated: bool = False) -> None:
        super().__init__()
        self.l1 = DotBnAct(w, w, bn, act)
        self.l2 = DotBnAct(w, w, bn, act)
        self.gate = Gate() if gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.l2(self.l1(x))
        if self.gate is not None:
            y = self.gate(y)
        return y + x


class MlpRef(nn.Module):
    """First layer 784 -> width (Dot[-BN]-act), `depth` middle layers of the given kind,
    then Linear(width -> classes)."""

    def __init__(self, depth: int, width: int = 50, block: str = "plain", bn: bool = True,
                 act: str = "relu", classes: int = 10, in_features: int = 784,
                 bias_init: float = -2.0) -> None:
        super().__init__()
        self.first = DotBnAct(in_features, width, bn, act)
        if block == "plain":
            middle = [DotBnAct(width, width, bn, act) for _ in range(depth)]
        elif block in ("residual", "gated"):
            assert depth % 2 == 0
            middle = [FcResidualBlock(width, bn, act, gated=block == "gated") for _ in range(depth // 2)]
        elif block == "highway":
            middle = [HighwayLayer(lambda: nn.Linear(width, width), bias_init, act) for _ in range(depth)]
        else:
            raise ValueError(block)
        self.middle = nn.Sequential(*middle)
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.middle(self.first(x.flatten(1))))


# ---------------------------------------------------------------------------------------------
# Helpers for the equivalence tests and the benchmarks
# ---------------------------------------------------------------------------------------------


BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def bn_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, b) for n, b in module.named_buffers() if n.rsplit(".", 1)[-1] in BN_BUFFERS]


def copy_positionally(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters, then BatchNorm buffers, from src to dst in registration order.

    Raises AssertionError naming the first pair whose shapes differ (a structural mismatch).
    Scalars of one element may be stored as shape () or (1,) on either side.
    """
    sp, dp = list(src.named_parameters()), list(dst.named_parameters())
    assert len(sp) == len(dp), f"{len(sp)} parameter tensors in the compiled net, {len(dp)} in the reference"
    sb, db = bn_buffers(src), bn_buffers(dst)
    assert len(sb) == len(db), f"{len(sb)} BatchNorm buffers in the compiled net, {len(db)} in the reference"
    with torch.no_grad():
        for (sn, s), (dn, d) in list(zip(sp, dp)) + list(zip(sb, db)):
            same = s.shape == d.shape or (s.numel() == 1 and d.numel() == 1)
            assert same, f"shape mismatch: compiled {sn} {tuple(s.shape)} vs reference {dn} {tuple(d.shape)}"
            d.copy_(s.reshape(d.shape))


def randomize(module: nn.Module, seed: int = 0) -> None:
    """Give every parameter and BN statistic a random, non-trivial value (positive variances),
    so that a test comparing outputs can see every one of them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.numel() == 1:  # gates k, Dirac a and b: keep them away from 0 and of both signs
                p.copy_((torch.rand(p.shape, generator=g) * 1.5 + 0.25).to(p.dtype))
            elif leaf == "weight" and p.dim() == 1:  # BN scale
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / max(fan_in, 1) ** 0.5)
        for name, b in bn_buffers(module):
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_mean":
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif leaf == "running_var":
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def disable_dropout(module: nn.Module) -> None:
    """Keep the module in its mode but switch its dropout layers off (eval)."""
    for m in module.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)):
            m.eval()
