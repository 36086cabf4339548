"""The defining property of each layer torch lacks, and IR counts against real numel()."""

from __future__ import annotations

import pytest
import torch

import archlang
from archlang.layers.dirac import DiracConv2d
from archlang.layers.gate import GatedLayer
from archlang.layers.highway import Highway
from archlang.layers.ncrelu import NCReLU
from archlang.layers.residual import Residual


def _module_at(model: torch.nn.Module, index: int) -> torch.nn.Module:
    return model[index]  # type: ignore[index]


@pytest.mark.parametrize("k", [0.0, -0.5])
def test_gate_with_k_at_or_below_zero_makes_a_residual_block_the_identity(k: float):
    model = archlang.compile(f"wrn(depth=10, k=1, block=gated(B(3,3), k_init={k}))").eval()
    block = next(m for m in model.modules() if isinstance(m, Residual))
    assert block.shortcut is None  # first block of group 1 with k=1: identity shortcut
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)


def test_gate_on_plain_layer_interpolates_and_closes_to_identity():
    layer = GatedLayer(torch.nn.Linear(5, 5), k_init=0.0)
    x = torch.randn(3, 5)
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        layer.gate.k.fill_(1.0)
    assert torch.allclose(layer(x), layer.layer(x))


def test_gate_is_relu_of_k_and_trains():
    model = archlang.compile("mlp(depth=2, width=8, block=gated(residual))")
    k = next(p for n, p in model.named_parameters() if n.endswith("gate.k"))
    assert k.item() == 1.0
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    assert k.grad is not None and k.grad.abs().item() > 0


def test_dirac_conv_with_a1_b0_is_the_identity_square_and_after_ncrelu():
    x = torch.randn(2, 6, 5, 5)
    conv = DiracConv2d(6, 6, 3, a_init=1.0, b_init=0.0)
    assert torch.allclose(conv(x), x, atol=1e-6)
    conv2 = DiracConv2d(12, 6, 3, a_init=1.0, b_init=0.0)
    assert torch.allclose(conv2(NCReLU()(x)), x, atol=1e-6)
    conv3 = DiracConv2d(12, 6, 3, a_init=2.5, b_init=0.0)
    assert torch.allclose(conv3(NCReLU()(x)), 2.5 * x, atol=1e-5)


def test_dirac_weight_is_normalised_per_output_filter():
    conv = DiracConv2d(4, 4, 3, a_init=0.0, b_init=1.0)
    norms = conv.combined_weight().flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(4), atol=1e-6)


def test_highway_with_closed_transform_gate_copies_its_input():
    layer = Highway(torch.nn.Linear(7, 7), torch.nn.Linear(7, 7), "relu", bias_init=-2.0)
    with torch.no_grad():
        layer.t.weight.zero_()
        layer.t.bias.fill_(-1e4)
    x = torch.randn(3, 7)
    assert torch.equal(layer(x), x)


def test_highway_gate_bias_starts_at_bias_init():
    model = archlang.compile("mlp(depth=3, width=10, block=highway, bn=false, bias_init=-3)")
    gates = [m for m in model.modules() if isinstance(m, Highway)]
    assert len(gates) == 3 and all(torch.all(g.t.bias == -3.0) for g in gates)


def test_ncrelu_doubles_channels_and_keeps_information():
    x = torch.randn(2, 3, 4, 4)
    y = NCReLU()(x)
    assert y.shape == (2, 6, 4, 4)
    assert torch.equal(y[:, :3] + y[:, 3:], x)


SPECS = [
    "wrn(depth=16, k=2, block=gated(B(3,3)), dropout=0.3)",
    "wrn(n=2, k=2, block=B(1,3,1))",
    "gated(preact_resnet(depth=20))",
    "preact_resnet(depth=20, shortcut=zeropad)",
    "preact_resnet(depth=29, bottleneck=true)",
    "resnet(depth=18)",
    "resnet(depth=50)",
    "diracnet(depth=10, k=1)",
    "diracnet(depth=18, k=0.75, dataset=imagenet)",
    "mlp(depth=4, block=gated(residual))",
    "mlp(depth=4, block=gated(plain))",
    "mlp(depth=4, width=50, block=highway, bn=false)",
    "highway_cnn(mnist, 16)",
    "highway_cnn(cifar_b)",
    ("seq(input(3, 16, 16), conv(8, bias=true), bn, relu, repeat(2, residual(seq(conv(8), bn, relu, conv(8)))), "
    "residual(seq(conv(16, stride=2), relu, conv(16)), shortcut=projection), ncrelu, dirac(conv(16)), "
    "highway(conv(16)), maxpool(2, ceil=true), avgpool(2), flatten, dropout(0.1), linear(10))"),
]


@pytest.mark.parametrize("spec", SPECS)
def test_ir_count_equals_numel_and_forward_shape_is_inferred(spec: str):
    compiled = archlang.compile_spec(spec)
    with torch.device("meta"):
        model = compiled.build()
    assert sum(p.numel() for p in model.parameters()) == compiled.summary.params
    small = compiled.input_shape if compiled.input_shape[-1] <= 32 else (3, 64, 64)
    out = compiled.build().eval()(torch.randn(2, *small))
    assert tuple(out.shape) == (2, *compiled.summary.output_shape)
