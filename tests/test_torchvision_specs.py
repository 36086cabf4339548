"""Every spec in archlang/specs/torchvision/ is exactly the torchvision model it is named after.

For each file NAME.arch: the IR's parameter count is `sum(p.numel())` of `torchvision.models.NAME()`,
its MACs are what FlopCounterMode counts for that model at the spec's input size (FlopCounterMode counts
conv and matmul only, 2 FLOPs per multiply-accumulate: archlang's MAC convention), and the built
network holding that model's weights (imported by structure, archlang/transplant.py) gives its outputs.

Counts and MACs need no tensors, so torchvision's model is built on the meta device there; the outputs
use tensors filled once with random values (BN statistics too, so a misplaced tensor shows), without
either side's initialisation, and a 64x64 input (the spec's 224 would only make the test slower: every
one of these networks ends in a global pool).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models")

from threads import one_thread  # noqa: F401 (autouse: one torch thread in this module)
from torch.utils.flop_counter import FlopCounterMode

import archlang

SPECS = Path(__file__).resolve().parents[1] / "archlang" / "specs" / "torchvision"
FILES = sorted(SPECS.glob("*.arch"))
# The operators FlopCounterMode counted for these networks: convolutions and the classifier's addmm.
COUNTED = {"aten.convolution", "aten.addmm", "aten.mm"}


@functools.cache
def _compiled(path: Path) -> archlang.Compiled:
    return archlang.compile_spec(path.read_text(encoding="utf-8"), str(path))


@functools.cache
def _structure(path: Path) -> torch.nn.Module:
    """torchvision.models.NAME() without tensors (on the meta device): built once per network, as
    building it runs its initialisation, which costs about a second even there."""
    with torch.device("meta"):
        return getattr(models, path.stem)(weights=None).eval()


def test_the_issue_s_networks_are_there():
    assert {"resnet50", "wide_resnet50_2", "resnext50_32x4d", "densenet121", "mobilenet_v2",
            "squeezenet1_1"} <= {p.stem for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_count_is_torchvision_s(path: Path):
    reference = _structure(path)
    assert _compiled(path).total_params == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_macs_are_flop_counter_mode_s(path: Path):
    compiled = _compiled(path)
    reference = _structure(path)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        reference(torch.empty(1, *compiled.input_shape, device="meta"))
    assert {str(op) for op in counter.get_flop_counts()["Global"]} <= COUNTED
    assert counter.get_total_flops() == 2 * compiled.summary.macs


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random values in every parameter and BN statistic (scales and variances positive, weights scaled
    by their fan-in), each tensor a slice of one random pool at its own random offset: drawing 69M
    values one by one takes seconds on a loaded machine, copying them a fraction of one."""
    g = torch.Generator().manual_seed(seed)
    size = 2**20 + 7919
    pool = torch.randn(size, generator=g).repeat(2)  # twice, so that any window of `size` is one slice

    def draw(t: torch.Tensor) -> torch.Tensor:
        start = int(torch.randint(size, (), generator=g))
        window = pool[start: start + min(t.numel(), size)]
        return window.repeat(-(-t.numel() // size))[: t.numel()].view(t.shape)

    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            leaf = name.rsplit(".", 1)[-1]
            if not tensor.is_floating_point():
                tensor.zero_()  # num_batches_tracked
            elif leaf == "running_var" or (leaf == "weight" and tensor.dim() == 1):
                tensor.copy_(draw(tensor).abs() + 0.5)
            elif leaf == "running_mean":
                tensor.copy_(draw(tensor) * 0.1)
            else:
                tensor.copy_(draw(tensor) / (tensor[0].numel() if tensor.dim() > 1 else 1) ** 0.5)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_torchvision_weights_give_torchvision_outputs(path: Path):
    reference = copy.deepcopy(_structure(path)).to_empty(device="cpu")
    _randomize(reference, seed=7)
    with torch.device("meta"):
        ours = _compiled(path).build()
    ours = archlang.load_torchvision(ours.to_empty(device="cpu"), reference).eval()
    # Activations well above 6, so that relu and relu6 differ (with unit inputs SqueezeNet's stay below 6).
    x = 10 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.abs().max() > 1  # a network that outputs zeros would match anything
    assert float((got - expected).abs().max()) <= 1e-5
