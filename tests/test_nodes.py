"""The node-kind table: every core kind has one entry, counts and MACs are the built module's, and
the new kinds (grouped/dilated conv, relu6, concat, add, adaptive_avgpool) compute what torch and
torchvision's own definitions compute.

Counts are compared with `sum(p.numel())` of the built module, MACs with FlopCounterMode (which
counts conv and matmul only, as archlang's MAC convention does: FLOPs = 2 x MACs), outputs with
torch(vision) modules holding the same weights (copied in registration order, shapes checked).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archlang
from archlang import kinds
from archlang.errors import ArchlangError
from archlang.ir import core


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flop_macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


def randomize(module: nn.Module, seed: int = 0) -> None:
    """Random values everywhere (BN statistics too), so a wrongly placed weight changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(p[0].numel() if p.dim() > 1 else 1, 1) ** 0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)


def transplant(src: nn.Module, dst: nn.Module) -> None:
    """Copy every parameter and buffer of src into dst by registration order, shapes checked."""
    a, b = src.state_dict(), dst.state_dict()
    assert len(a) == len(b), f"{len(a)} tensors vs {len(b)}"
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert va.shape == vb.shape, f"{ka} {tuple(va.shape)} vs {kb} {tuple(vb.shape)}"
    dst.load_state_dict(dict(zip(b, a.values())))


def check(spec: str, reference: nn.Module | None = None, batch: int = 2, tolerance: float = 0.0) -> archlang.Compiled:
    """IR count = built count (= reference count), IR MACs = FlopCounterMode's, outputs = reference's
    (bit for bit unless a tolerance is given: the same torch ops run in the same order)."""
    compiled = archlang.compile_spec(spec)
    net = compiled.build().eval()
    assert compiled.total_params == n_params(net), spec
    x = torch.randn(1, *compiled.input_shape, generator=torch.Generator().manual_seed(1))
    assert compiled.summary.macs == flop_macs(net, x), spec
    if reference is not None:
        assert n_params(reference) == compiled.total_params
        randomize(net)
        transplant(net, reference)
        reference.eval()
        xb = torch.randn(batch, *compiled.input_shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            out, ref = net(xb), reference(xb)
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= tolerance, spec
    return compiled


# ---- the table ----------------------------------------------------------------------------------


def test_every_core_kind_has_exactly_one_table_entry():
    assert set(kinds.KINDS) == set(core.CORE_MODELS)
    assert len({m.model_fields["kind"].default for m in core.CORE_MODELS}) == len(core.CORE_MODELS)


def test_module_name_is_the_item_index_minus_one():
    assert kinds.module_name(1) == "0" and kinds.item_index("0") == 1
    with pytest.raises(ValueError):
        kinds.module_name(0)


NAMING_SPECS = [
    "gated(wrn(depth=10, k=1))",
    "preact_resnet(20, shortcut=zeropad)",
    "mlp(depth=4, block=gated(plain), width=8)",
    "highway_cnn(mnist, 4)",
    "diracnet(depth=10, k=0.25)",
    ("seq(input(8, 8, 8), repeat(2, concat(identity, seq(bn, relu, conv(4)))), add(conv(16, groups=4), "
     "seq(conv(16, kernel=1), bn)), residual(conv(16, dilation=2), shortcut=conv(16, kernel=1)), "
     "adaptive_avgpool(2), flatten, linear(3))"),
]


@pytest.mark.parametrize("spec", NAMING_SPECS)
def test_summary_paths_are_the_built_module_names(spec):
    # The contract analyses rely on: a row's path names its module (or, for a gate, its parameter).
    compiled = archlang.compile_spec(spec)
    net = compiled.build()
    params = dict(net.named_parameters())
    for layer in compiled.summary.layers:
        if layer.kind == "gate":
            assert params[layer.path].numel() == 1
        else:
            assert n_params(net.get_submodule(layer.path)) == layer.params, layer.path


# ---- new kinds, one at a time, against torch ----------------------------------------------------


def test_grouped_and_depthwise_conv():
    ref = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False), nn.Conv2d(16, 16, 3, 2, 1, groups=16))
    check("seq(input(8, 9, 9), conv(16, groups=4), conv(16, stride=2, groups=16, bias=true))", ref)


def test_dilated_conv_keeps_the_size_by_default():
    ref = nn.Sequential(nn.Conv2d(3, 8, 3, padding=2, dilation=2, bias=False), nn.Conv2d(8, 8, 5, padding=0, dilation=3))
    compiled = check("seq(input(3, 20, 20), conv(8, dilation=2), conv(8, kernel=5, dilation=3, padding=0, bias=true))",
                     ref)
    assert compiled.summary.output_shape == (8, 8, 8)


def test_relu6_and_adaptive_avgpool():
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU6(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                        nn.Linear(36, 5))
    compiled = check("seq(input(3, 7, 7), conv(4), relu6, adaptive_avgpool(3), flatten, linear(5))", ref)
    assert compiled.summary.layers[2].out_shape == (4, 3, 3)


class _Cat(nn.Module):
    def __init__(self, *branches: nn.Module, add: bool = False) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.add = add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        return sum(outs[1:], outs[0]) if self.add else torch.cat(outs, 1)


def test_concat_of_branches_joins_channels():
    ref = nn.Sequential(_Cat(nn.Identity(), nn.Conv2d(3, 5, 3, padding=1, bias=False),
                             nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(3, 2, 1, bias=True))))
    compiled = check("seq(input(3, 6, 6), concat(identity, conv(5), seq(maxpool(3, stride=1, padding=1), "
                     "conv(2, kernel=1, bias=true))))", ref)
    assert compiled.summary.output_shape == (10, 6, 6)


def test_concat_of_vectors():
    ref = nn.Sequential(nn.Flatten(), _Cat(nn.Linear(12, 3), nn.Linear(12, 4)))
    check("seq(input(3, 2, 2), flatten, concat(linear(3), linear(4)))", ref)


def test_add_of_branches_sums_them():
    ref = nn.Sequential(_Cat(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.Conv2d(4, 8, 1, bias=False),
                             nn.Sequential(nn.Conv2d(4, 8, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(8)),
                             add=True))
    check("seq(input(4, 5, 5), add(conv(8), conv(8, kernel=1), seq(conv(8, dilation=2), bn)))", ref)


# ---- torchvision's blocks and whole networks ----------------------------------------------------


def _bottleneck(width: int, out: int, stride: int, groups: int, project: bool) -> str:
    body = (f"seq(conv({width}, kernel=1), bn, relu, conv({width}, stride={stride}, groups={groups}), bn, relu, "
            f"conv({out}, kernel=1), bn)")
    shortcut = f"seq(conv({out}, kernel=1, stride={stride}), bn)" if project else "identity"
    return f"residual({body}, shortcut={shortcut}, post=relu)"


def resnext50_32x4d() -> str:
    items, inp = [], 64
    for group, count in enumerate((3, 4, 6, 3)):
        planes = 64 * 2**group
        for i in range(count):
            stride = 2 if group > 0 and i == 0 else 1
            items.append(_bottleneck(planes * 2, planes * 4, stride, 32, stride != 1 or inp != planes * 4))
            inp = planes * 4
    return ("seq(input(3, 32, 32), conv(64, kernel=7, stride=2), bn, relu, maxpool(3, stride=2, padding=1), "
            + ", ".join(items) + ", global_avgpool, linear(1000))")


def _conv_bn_relu6(out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> str:
    return f"conv({out}, kernel={kernel}, stride={stride}, groups={groups}), bn, relu6"


def mobilenet_v2() -> str:
    items, inp = [_conv_bn_relu6(32, stride=2)], 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for i in range(n):
            stride, hidden = (s if i == 0 else 1), inp * t
            layers = ([_conv_bn_relu6(hidden, kernel=1)] if t != 1 else []) + \
                [_conv_bn_relu6(hidden, stride=stride, groups=hidden), f"conv({c}, kernel=1), bn"]
            body = f"seq({', '.join(layers)})"
            items.append(f"residual({body}, shortcut=identity)" if stride == 1 and inp == c else body)
            inp = c
    items.append(_conv_bn_relu6(1280, kernel=1))
    return f"seq(input(3, 64, 64), {', '.join(items)}, adaptive_avgpool(1), flatten, dropout(0.2), linear(1000))"


def densenet121() -> str:
    items, width = ["conv(64, kernel=7, stride=2), bn, relu, maxpool(3, stride=2, padding=1)"], 64
    dense = "concat(identity, seq(bn, relu, conv(128, kernel=1), bn, relu, conv(32)))"
    for i, count in enumerate((6, 12, 24, 16)):
        items.append(f"repeat({count}, {dense})")
        width += 32 * count
        if i < 3:
            width //= 2
            items.append(f"bn, relu, conv({width}, kernel=1), avgpool(2)")
    return f"seq(input(3, 32, 32), {', '.join(items)}, bn, relu, global_avgpool, linear(1000))"


def _fire(squeeze: int, expand: int) -> str:
    return (f"seq(conv({squeeze}, kernel=1, bias=true), relu, concat(seq(conv({expand}, kernel=1, bias=true), relu), "
            f"seq(conv({expand}, bias=true), relu)))")


def squeezenet1_1() -> str:
    pool = "maxpool(3, stride=2, ceil=true)"
    fires = [pool, _fire(16, 64), _fire(16, 64), pool, _fire(32, 128), _fire(32, 128), pool, _fire(48, 192),
             _fire(48, 192), _fire(64, 256), _fire(64, 256)]
    return (f"seq(input(3, 224, 224), conv(64, stride=2, padding=0, bias=true), relu, {', '.join(fires)}, "
            "dropout(0.5), conv(1000, kernel=1, bias=true), relu, adaptive_avgpool(1), flatten)")


@pytest.mark.parametrize("name, spec", [("resnext50_32x4d", resnext50_32x4d), ("mobilenet_v2", mobilenet_v2),
                                        ("densenet121", densenet121), ("squeezenet1_1", squeezenet1_1)])
def test_torchvision_networks(name, spec):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    compiled = check(spec(), reference, batch=1, tolerance=1e-5)
    assert compiled.total_params == n_params(reference)
    x = torch.randn(1, *compiled.input_shape)
    assert compiled.summary.macs == flop_macs(reference.eval(), x)


def test_googlenet_inception_block():
    from torchvision.models.googlenet import Inception

    def basic(out: int, kernel: int = 1) -> str:
        return f"seq(conv({out}, kernel={kernel}), bn(eps=0.001), relu)"

    spec = (f"seq(input(192, 7, 7), concat({basic(64)}, seq({basic(96)}, {basic(128, 3)}), "
            f"seq({basic(16)}, {basic(32, 3)}), seq(maxpool(3, stride=1, padding=1, ceil=true), {basic(32)})))")
    check(spec, Inception(192, 64, 96, 128, 16, 32, 32))


# ---- errors -------------------------------------------------------------------------------------


def render(spec: str) -> str:
    with pytest.raises(ArchlangError) as info:
        archlang.compile_spec(spec)
    return info.value.render()


def test_groups_must_divide_the_channels():
    assert render("seq(input(3, 8, 8), conv(16, groups=4))") == (
        "<inline>:1:30: error: groups=4 does not divide the 3 input channels\n"
        "   1 | seq(input(3, 8, 8), conv(16, groups=4))\n"
        "                                    ^^^^^^^^\n"
        "hint: groups must divide both 3 (input) and 16 (output)")
    assert "does not divide the 6 output channels" in render("seq(input(4, 8, 8), conv(6, groups=4))")


def test_concat_shape_mismatch_points_at_the_branch():
    assert render("seq(input(3, 8, 8), concat(conv(4), conv(4, stride=2)))") == (
        "<inline>:1:37: error: concat joins branches on channels, but this branch gives 4x4x4 and the first "
        "4x8x8: the spatial size differs\n"
        "   1 | seq(input(3, 8, 8), concat(conv(4), conv(4, stride=2)))\n"
        "                                           ^^^^^^^^^^^^^^^^^\n"
        "hint: give every branch the same stride and padding")
    assert "the rank differs" in render("seq(input(3, 8, 8), concat(identity, flatten))")


def test_add_shape_mismatch_points_at_the_branch():
    assert render("seq(input(3, 8, 8), add(conv(4), conv(8)))") == (
        "<inline>:1:34: error: add sums branches of one shape, but this branch gives 8x8x8 and the first 4x8x8\n"
        "   1 | seq(input(3, 8, 8), add(conv(4), conv(8)))\n"
        "                                        ^^^^^^^\n"
        "hint: give every branch the same width, stride and padding")


def test_branches_need_at_least_one_branch():
    assert "concat needs at least one branch" in render("seq(input(3, 8, 8), concat())")
    assert "add needs at least one branch" in render("seq(input(3, 8, 8), add())")


def test_dirac_conv_is_dense():
    assert "a Dirac conv is dense: groups=1 and dilation=1" in render(
        "seq(input(4, 8, 8), dirac(conv(4, groups=2)))")


def test_gated_with_nothing_to_gate_is_an_error():
    assert render("gated(mlp(depth=10, block=highway, bn=false))") == (
        "<inline>:1:1: error: an mlp of highway layers has no residual blocks to gate\n"
        "   1 | gated(mlp(depth=10, block=highway, bn=false))\n"
        "       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "hint: gate block=residual or block=plain: gated(mlp(depth=10, block=residual))")
    assert "no residual blocks to gate" in render("gated(highway_cnn(mnist))")


def test_new_kinds_print_back_as_specs():
    from archlang.ir.text import to_text

    spec = ("seq(input(8, 8, 8), concat(identity, conv(8, groups=8, dilation=2)), add(relu6, identity), "
            "adaptive_avgpool(2), flatten, linear(3))")
    compiled = archlang.compile_spec(spec)
    again = archlang.compile_spec(to_text(compiled.network))
    assert again.network.model_dump() == compiled.network.model_dump()


def test_params_of_the_new_kinds_imports_no_torch():
    code = ("import sys, archlang; n = archlang.count_params('seq(input(8, 8, 8), concat(identity, conv(8, groups=8)),"
            " adaptive_avgpool(2), relu6, flatten, linear(3))'); assert 'torch' not in sys.modules; print(n)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 8 * 9 + 16 * 4 * 3 + 3


def test_every_container_kind_can_be_drawn():
    pytest.importorskip("graphviz")
    from archlang.draw import graph

    source = graph(archlang.compile_spec(NAMING_SPECS[-1]), None).source
    assert "concat of 2" in source and "add of 2" in source and " [label=cat " in source
