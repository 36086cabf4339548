"""Compiled archlang networks compute exactly what independent hand-written PyTorch code computes.

For each case: the compiled module and the hand-written reference (tests/reference_nets.py,
written from the authors' code) have the same parameter count; the compiled module's parameters
and BatchNorm statistics are set to random values and copied positionally into the reference;
then outputs agree in eval mode, and outputs, gradients and updated BN statistics agree in
train mode with dropout switched off. Small widths and depths, batch 2-4: each case is fast.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import reference_nets as R

import archlang

ATOL = 1e-5
RTOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: one thread is faster, and immune to a busy machine's
    OpenMP contention (which makes these tests 50x slower on 2 shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=RTOL, atol=ATOL)


def check_equivalent(spec: str, reference: torch.nn.Module, x: torch.Tensor, train: bool = True,
                     negative_gate: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    compiled = archlang.compile_spec(spec)
    net = compiled.build()
    assert compiled.total_params == n_params(net) == n_params(reference), (
        f"{spec}: IR {compiled.total_params:,}, built {n_params(net):,}, reference {n_params(reference):,}")
    R.randomize(net, seed)
    if negative_gate:  # a closed gate somewhere: relu(k) = 0 must switch that residual branch off
        next(p for p in net.parameters() if p.numel() == 1).data.fill_(-0.5)
    R.copy_positionally(net, reference)

    net.eval(), reference.eval()
    with torch.no_grad():
        out, ref_out = net(x), reference(x)
    assert out.shape == ref_out.shape
    assert close(out, ref_out), f"eval: max |diff| = {(out - ref_out).abs().max():.3g}"

    if train:
        net.train(), reference.train()
        R.disable_dropout(net), R.disable_dropout(reference)
        out, ref_out = net(x), reference(x)
        assert close(out, ref_out), f"train: max |diff| = {(out - ref_out).abs().max():.3g}"
        (out.square().mean()).backward()
        (ref_out.square().mean()).backward()
        for (name, p), (ref_name, q) in zip(net.named_parameters(), reference.named_parameters()):
            g, h = p.grad, q.grad
            assert (g is None) == (h is None), f"gradient of {name} / {ref_name}"
            if g is not None:
                assert close(g.reshape(h.shape), h), f"gradient of {name} vs {ref_name}"
        for (name, b), (_, c) in zip(R.bn_buffers(net), R.bn_buffers(reference)):
            assert close(b.float(), c.float()), f"BN statistic {name} after a training step"
    return net


def images(c: int = 3, h: int = 32, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, c, h, h, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# The reference helpers themselves
# ---------------------------------------------------------------------------------------------


def test_copy_positionally_refuses_a_structural_mismatch() -> None:
    a = R.wrn_ref(1, 1)
    b = R.wrn_ref(1, 2)
    with pytest.raises(AssertionError):
        R.copy_positionally(a, b)


def test_reference_wrn_counts_match_the_paper() -> None:
    # WRN Table 4: WRN-40-4 8.9M (8,949,210 in the authors' log); the reference is independent of archlang.
    with torch.device("meta"):
        assert n_params(R.wrn_ref(6, 4)) == 8_949_210
        assert round(n_params(R.wrn_ref(4, 10)) / 1e6, 1) == 36.5
        assert round(n_params(R.DiracNetCifarRef(34, 2)) / 1e6, 1) == 3.7
    assert n_params(R.HighwayMnistCnnRef(16)) == 38_986


def test_reference_dirac_is_identity_scaled_with_a1_b0() -> None:
    # DiracNets eq. 11: with b = 0, NCReLU followed by the Dirac conv is a·x.
    conv = R.DiracConv(4, 4)
    with torch.no_grad():
        conv.a.fill_(1.5), conv.b.fill_(0.0)
    x = torch.randn(2, 4, 5, 5)
    assert close(conv(x), 1.5 * x)


# ---------------------------------------------------------------------------------------------
# Wide ResNets and gated ones
# ---------------------------------------------------------------------------------------------


def test_wrn_16_2() -> None:
    check_equivalent("wrn(depth=16, k=2)", R.wrn_ref(2, 2), images())


def test_wrn_with_dropout_in_eval_mode() -> None:
    # dropout sits between the convs; eval mode switches it off in both
    check_equivalent("wrn(depth=10, k=2, dropout=0.3)", R.wrn_ref(1, 2, dropout=0.3), images())


def test_wrn_block_b131() -> None:
    # WRN Table 2 block type B(1,3,1); the stride is on the first conv (as wide_basic)
    check_equivalent("wrn(n=1, k=2, block=B(1,3,1))", R.wrn_ref(1, 2, (1, 3, 1)), images())


def test_wrn_block_b3_single_conv() -> None:
    # WRN Table 3, l = 1
    check_equivalent("wrn(n=2, k=1, block=B(3))", R.wrn_ref(2, 1, (3,)), images())


def test_gated_wrn_block_form() -> None:
    check_equivalent("wrn(depth=16, k=2, block=gated(B(3,3)))", R.wrn_ref(2, 2, gated=True), images(),
                     negative_gate=True)


def test_gated_wrn_family_form() -> None:
    check_equivalent("gated(wrn(depth=10, k=1))", R.wrn_ref(1, 1, gated=True), images())


# ---------------------------------------------------------------------------------------------
# Pre-activation ResNets (He et al. 2016)
# ---------------------------------------------------------------------------------------------


def test_preact_resnet_basic() -> None:
    check_equivalent("preact_resnet(depth=20)", R.preact_resnet_ref(20), images())


def test_preact_resnet_basic_zeropad() -> None:
    check_equivalent("preact_resnet(depth=14, shortcut=zeropad)",
                     R.preact_resnet_ref(14, shortcut="zeropad"), images())


def test_preact_resnet_bottleneck() -> None:
    # resnet-pre-act.lua: BN-ReLU shared by both paths where the width changes, stride on the
    # first 1x1 conv, 1x1 projection (no BN) including 16 -> 64
    check_equivalent("preact_resnet(depth=20, bottleneck=true)", R.preact_resnet_ref(20, bottleneck=True),
                     images())


def test_gated_preact_resnet() -> None:
    check_equivalent("gated(preact_resnet(depth=14))", R.preact_resnet_ref(14, gated=True), images(),
                     negative_gate=True)


# ---------------------------------------------------------------------------------------------
# DiracNets
# ---------------------------------------------------------------------------------------------


def test_diracnet_10_1_cifar() -> None:
    check_equivalent("diracnet(depth=10, k=1)", R.DiracNetCifarRef(10, 1), images())


def test_diracnet_16_half_cifar100() -> None:
    # k = 0.5: widths 8/16/32, 2N = 4 layers per group, a 100-way head
    check_equivalent("diracnet(depth=16, k=0.5, classes=100)", R.DiracNetCifarRef(16, 0.5, classes=100), images())


# ---------------------------------------------------------------------------------------------
# Highway networks
# ---------------------------------------------------------------------------------------------


def test_highway_mnist_cnn() -> None:
    check_equivalent("highway_cnn(variant=mnist, width=16)", R.HighwayMnistCnnRef(16), images(1, 28, 3))


def test_highway_mnist_cnn_width_8() -> None:
    check_equivalent("highway_cnn(variant=mnist, width=8)", R.HighwayMnistCnnRef(8), images(1, 28, 2))


# ---------------------------------------------------------------------------------------------
# Fully-connected MNIST nets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,block,bn,act", [
    ("mlp(depth=4, width=20, block=plain)", "plain", True, "relu"),
    ("mlp(depth=4, width=20, block=residual)", "residual", True, "relu"),
    ("mlp(depth=6, width=20, block=gated(residual))", "gated", True, "relu"),
    ("mlp(depth=5, width=20, block=highway, bn=false)", "highway", False, "relu"),
    ("mlp(depth=5, width=20, block=highway, bn=false, act=tanh)", "highway", False, "tanh"),
    ("mlp(depth=3, width=20, block=plain, bn=false, act=tanh)", "plain", False, "tanh"),
])
def test_mlp(spec: str, block: str, bn: bool, act: str) -> None:
    depth = int(spec.split("depth=")[1].split(",")[0])
    ref = R.MlpRef(depth, 20, block, bn=bn, act=act)
    check_equivalent(spec, ref, images(1, 28, 4), negative_gate=block == "gated")


# ---------------------------------------------------------------------------------------------
# ImageNet ResNet-18: torchvision's weights in our network give torchvision's outputs
# ---------------------------------------------------------------------------------------------


def test_resnet18_with_torchvision_weights() -> None:
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    tv = models.resnet18()
    R.randomize(tv, 3)
    ours = archlang.compile("resnet(depth=18)")
    assert n_params(ours) == n_params(tv)
    R.copy_positionally(tv, ours)
    x = images(3, 64, 2)
    tv.eval(), ours.eval()
    with torch.no_grad():
        a, b = tv(x), ours(x)
    assert a.shape == b.shape == (2, 1000)
    assert close(a, b), f"max |diff| = {(a - b).abs().max():.3g}"
    tv.train(), ours.train()
    assert close(tv(x), ours(x))
