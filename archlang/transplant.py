"""Weights of a structurally identical torchvision model in an archlang module.

The two modules name their layers differently (`layer1.0.conv1` here is `4.body.0`), so tensors
are paired by structure, not by name: both models are read as the sequence of their layers that
hold tensors (in registration order, which is the order of computation for the networks both
describe), and layer i of one must be layer i of the other: the same layer type, the same
parameters and persistent buffers, the same shapes. The first layer where that fails is
reported on both sides. Nothing is downloaded: the torchvision weights come as a module or a
state-dict file. Downhill of build: imports neither training nor the analyses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from archlang.errors import ArchlangError, did_you_mean, shorten
from archlang.weights import check_state, load_into, load_weights

PREFIX = "torchvision:"
_SPELLING = "--weights torchvision:NAME=FILE, e.g. --weights torchvision:resnet50=resnet50.pth"


@dataclass(frozen=True)
class TensorLayer:
    """A module that holds tensors itself: where it is, what it is, and its tensors in order."""

    path: str
    kind: str  # the module's class name (Conv2d, BatchNorm2d, Linear, ...)
    tensors: tuple[tuple[str, torch.Tensor], ...]

    def signature(self) -> tuple:
        return self.kind, tuple((name, tuple(t.shape)) for name, t in self.tensors)

    def describe(self) -> str:
        shapes = ", ".join(f"{name} {'x'.join(map(str, t.shape)) or 'scalar'}" for name, t in self.tensors)
        return f"'{shorten(self.path or '(root)', 60)}' {self.kind} ({shapes})"


def tensor_layers(model: nn.Module) -> list[TensorLayer]:
    """The layers of `model` that hold parameters or persistent buffers, in registration order."""
    layers = []
    for path, module in model.named_modules():
        skip = module._non_persistent_buffers_set
        tensors = [*((n, p) for n, p in module._parameters.items() if p is not None),
                   *((n, b) for n, b in module._buffers.items() if b is not None and n not in skip)]
        if tensors:
            layers.append(TensorLayer(path, type(module).__name__, tuple(tensors)))
    return layers


def _mismatch(i: int, ours: list[TensorLayer], theirs: list[TensorLayer], name: str) -> ArchlangError:
    here = ours[i].describe() if i < len(ours) else f"nothing (this network has {len(ours)} layers with weights)"
    there = theirs[i].describe() if i < len(theirs) else f"nothing ({name} has {len(theirs)} layers with weights)"
    return ArchlangError(f"the structure differs from torchvision's {name} at layer {i + 1}: here {here}; "
                         f"{name} has {there}",
                         hint="the spec must describe the same layers, in the same order, with the same shapes")


def paired_state(source: nn.Module, target: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """`source`'s tensors under `target`'s names, layer by layer (target may live on the meta device)."""
    ours, theirs = tensor_layers(target), tensor_layers(source)
    for i in range(max(len(ours), len(theirs))):
        if i >= len(ours) or i >= len(theirs) or ours[i].signature() != theirs[i].signature():
            raise _mismatch(i, ours, theirs, name)
    state = {}
    for mine, other in zip(ours, theirs, strict=True):
        for (tensor_name, _), (_, value) in zip(mine.tensors, other.tensors, strict=True):
            key = f"{mine.path}.{tensor_name}" if mine.path else tensor_name
            state[key] = value.detach()
    return state


def torchvision_model(name: str, state: Mapping[str, torch.Tensor], where: str) -> nn.Module:
    """torchvision's `name` holding `state` (built on the meta device: no initialisation, no download)."""
    from torchvision import models

    known = models.list_models(module=models)
    if name not in known:
        raise ArchlangError(f"torchvision has no classification model '{shorten(name)}'",
                            hint=did_you_mean(name, known) or "see torchvision.models.list_models()")
    with torch.device("meta"):
        model = models.get_model(name)
    state = dict(state)
    for key, buffer in model.state_dict().items():  # older torchvision files predate this BN counter
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=buffer.dtype)
    load_into(model, state, where, assign=True, what=f"torchvision's {name}")
    return model.eval()


def load_torchvision(model: nn.Module, source: nn.Module | str,
                     state: Mapping[str, torch.Tensor] | str | Path | None = None) -> nn.Module:
    """Copy a torchvision model's weights into `model` (in place; returned for chaining).

    `source` is the torchvision module itself, or its name ("resnet50") with `state` its state dict
    or the path of a state-dict file (.pth/.pt/.safetensors)."""
    if isinstance(source, nn.Module):
        label = type(source).__name__.lower()
    else:
        label = source
        if state is None:
            raise ArchlangError(f"give the weights of torchvision's {shorten(source)}: a state dict or its file",
                                hint="nothing is downloaded; e.g. load_torchvision(model, 'resnet50', 'resnet50.pth')")
        where = f"<{source} state dict>" if isinstance(state, Mapping) else str(state)
        tensors = check_state(state, where) if isinstance(state, Mapping) else load_weights(Path(state))
        source = torchvision_model(label, tensors, where)
    load_into(model, paired_state(source, model, label), f"<torchvision {label}>")
    return model


def parse_weights_arg(text: str) -> tuple[str, Path]:
    """'torchvision:NAME=FILE' -> (NAME, FILE)."""
    name, sep, file = text[len(PREFIX):].partition("=")
    if not sep or not name or not file:
        raise ArchlangError(f"--weights {shorten(text)}: give the torchvision model and its state-dict file",
                            hint=f"{_SPELLING} (nothing is downloaded)")
    return name, Path(file)


def state_from_arg(text: str, target: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict, in `target`'s names, that `--weights torchvision:NAME=FILE` names."""
    name, file = parse_weights_arg(text)
    source = torchvision_model(name, load_weights(file), str(file))
    return paired_state(source, target, name)
