"""torchvision weights in archlang modules, paired by structure (archlang/transplant.py); nothing is downloaded:
torchvision's randomly initialised models stand in for trained ones."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models")

import reference_nets as R
from threads import one_thread  # noqa: F401 (autouse: one torch thread in this module)

import archlang
from archlang.cli import main
from archlang.errors import ArchlangError
from archlang.transplant import paired_state

# torchvision.models.wide_resnet50_2, written with core nodes: ResNet-50's bottlenecks, twice as wide inside.
WIDE_RESNET50_2 = """
let first1 = residual(seq(conv(128, kernel=1), bn, relu, conv(128), bn, relu, conv(256, kernel=1), bn),
                      shortcut=seq(conv(256, kernel=1), bn), post=relu)
let unit1 = residual(seq(conv(128, kernel=1), bn, relu, conv(128), bn, relu, conv(256, kernel=1), bn), post=relu)
let first2 = residual(seq(conv(256, kernel=1), bn, relu, conv(256, stride=2), bn, relu, conv(512, kernel=1), bn),
                      shortcut=seq(conv(512, kernel=1, stride=2), bn), post=relu)
let unit2 = residual(seq(conv(256, kernel=1), bn, relu, conv(256), bn, relu, conv(512, kernel=1), bn), post=relu)
let first3 = residual(seq(conv(512, kernel=1), bn, relu, conv(512, stride=2), bn, relu, conv(1024, kernel=1), bn),
                      shortcut=seq(conv(1024, kernel=1, stride=2), bn), post=relu)
let unit3 = residual(seq(conv(512, kernel=1), bn, relu, conv(512), bn, relu, conv(1024, kernel=1), bn), post=relu)
let first4 = residual(seq(conv(1024, kernel=1), bn, relu, conv(1024, stride=2), bn, relu, conv(2048, kernel=1), bn),
                      shortcut=seq(conv(2048, kernel=1, stride=2), bn), post=relu)
let unit4 = residual(seq(conv(1024, kernel=1), bn, relu, conv(1024), bn, relu, conv(2048, kernel=1), bn), post=relu)
seq(input(3, 64, 64), conv(64, kernel=7, stride=2), bn, relu, maxpool(kernel=3, stride=2, padding=1),
    first1, repeat(2, unit1), first2, repeat(3, unit2), first3, repeat(5, unit3), first4, repeat(2, unit4),
    global_avgpool, linear(1000))
"""


def _torchvision(name: str, only_statistics: bool = False) -> torch.nn.Module:
    """torchvision's randomly initialised model, with every parameter and BN statistic random (so a
    misplaced tensor shows in the outputs), or only its BN statistics (68M weights take seconds)."""
    torch.manual_seed(0)
    model = getattr(models, name)()
    if only_statistics:
        with torch.no_grad():
            for _, buffer in R.bn_buffers(model):
                buffer.copy_(torch.rand(buffer.shape) + 0.5 if buffer.is_floating_point() else buffer)
    else:
        R.randomize(model, 3)
    return model.eval()


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


@pytest.mark.parametrize("name, spec", [("resnet18", "resnet(depth=18)"), ("resnet50", "resnet(depth=50)"),
                                        ("wide_resnet50_2", WIDE_RESNET50_2)])
def test_torchvision_weights_give_torchvision_outputs(name: str, spec: str):
    tv = _torchvision(name, only_statistics=name == "wide_resnet50_2")
    ours = archlang.load_torchvision(archlang.compile(spec), tv)
    assert _max_diff(tv, ours) <= 1e-5


def test_a_state_dict_file_and_its_name_load_like_the_module(tmp_path: Path):
    tv = _torchvision("resnet18")
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    ours = archlang.load_torchvision(archlang.compile("resnet(depth=18)"), "resnet18", tmp_path / "resnet18.pth")
    assert _max_diff(tv, ours) <= 1e-5
    from_dict = archlang.load_torchvision(archlang.compile("resnet(depth=18)"), "resnet18", tv.state_dict())
    assert _max_diff(tv, from_dict) <= 1e-5


def test_older_torchvision_files_without_the_bn_counter_load(tmp_path: Path):
    tv = _torchvision("resnet18")
    state = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
    ours = archlang.load_torchvision(archlang.compile("resnet(depth=18)"), "resnet18", state)
    assert _max_diff(tv, ours) <= 1e-5


def test_cli_weights_torchvision_name_equals_file(tmp_path: Path, capsys):
    tv = _torchvision("resnet18")
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "r18.ts"
    assert main(["export", "resnet(depth=18, input=[3, 64, 64])", "--weights",
                 f"torchvision:resnet18={tmp_path / 'r18.pth'}", "--torchscript", str(out)]) == 0
    assert _max_diff(tv, torch.jit.load(str(out))) <= 1e-5


def test_the_first_differing_layer_is_named_on_both_sides():
    with pytest.raises(ArchlangError) as err:
        archlang.load_torchvision(archlang.compile("resnet(depth=34)"), _torchvision("resnet18"))
    assert err.value.render() == (
        "error: the structure differs from torchvision's resnet at layer 11: here '6.body.0' Conv2d (weight "
        "64x64x3x3); resnet has 'layer2.0.conv1' Conv2d (weight 128x64x3x3)\n"
        "hint: the spec must describe the same layers, in the same order, with the same shapes")


def test_a_longer_network_names_the_layer_torchvision_lacks():
    tv = _torchvision("resnet18")
    with torch.device("meta"):
        longer = torch.nn.Sequential(archlang.compile("resnet(depth=18)"), torch.nn.Linear(1000, 10))
    with pytest.raises(ArchlangError) as err:
        paired_state(tv, longer, "resnet18")
    assert err.value.message == (
        "the structure differs from torchvision's resnet18 at layer 42: here '1' Linear (weight 10x1000, bias 10); "
        "resnet18 has nothing (resnet18 has 41 layers with weights)")


def test_a_gated_network_is_not_torchvision_resnet():
    with pytest.raises(ArchlangError) as err:
        archlang.load_torchvision(archlang.compile("gated(resnet(depth=18))"), _torchvision("resnet18"))
    assert "at layer 7: here '4.gate' ResidualGate (k scalar); resnet has 'layer1.1.conv1' Conv2d" in err.value.message


def test_a_state_dict_of_another_torchvision_model(tmp_path: Path):
    torch.save(_torchvision("resnet50").state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ArchlangError) as err:
        archlang.load_torchvision(archlang.compile("resnet(depth=18)"), "resnet18", tmp_path / "r50.pth")
    assert err.value.render() == (
        f"{tmp_path / 'r50.pth'}: error: the weights do not fit torchvision's resnet18: 'layer1.0.conv1.weight' is "
        "64x64x1x1 in the file but 64x64x3x3 here (24 tensors differ)\n"
        "hint: use the spec the weights were trained with")


@pytest.mark.parametrize("name, message", [
    ("resnet51", "error: torchvision has no classification model 'resnet51'\nhint: did you mean 'resnet50'?"),
])
def test_unknown_torchvision_names_suggest_the_nearest(name: str, message: str):
    with pytest.raises(ArchlangError) as err:
        archlang.load_torchvision(archlang.compile("resnet(depth=18)"), name, {})
    assert err.value.render() == message


def test_a_name_without_weights_is_refused_nothing_is_downloaded():
    with pytest.raises(ArchlangError) as err:
        archlang.load_torchvision(archlang.compile("resnet(depth=18)"), "resnet18")
    assert err.value.render() == (
        "error: give the weights of torchvision's resnet18: a state dict or its file\n"
        "hint: nothing is downloaded; e.g. load_torchvision(model, 'resnet50', 'resnet50.pth')")
