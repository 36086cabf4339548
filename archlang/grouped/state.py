"""Between grouped and single: copy i's weights as an ordinary archlang state_dict, a grouped
model from G such state dicts, and the whole grouped state (model and optimizer) as one
safetensors file for exact resume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from archlang.build import build
from archlang.errors import ArchlangError, shorten
from archlang.fileio import atomic_path
from archlang.grouped.model import GroupedModel, check_supported
from archlang.grouped.optim import GroupedOptimizer
from archlang.ir import core

FORMAT = "archlang-grouped-1"


def split_state(model: GroupedModel) -> list[dict[str, torch.Tensor]]:
    """Copy i's state_dict under the single network's names: load it into `build(network)`."""
    state = model.state_dict()
    return [{name: tensor[i].clone() for name, tensor in state.items()} for i in range(model.copies)]


def merge_states(network: core.Seq, states: Sequence[dict[str, torch.Tensor]]) -> GroupedModel:
    """The grouped model whose copy i holds states[i] (each an ordinary state_dict of `network`)."""
    check_supported(network)
    singles = []
    for state in states:
        single = build(network)
        single.load_state_dict(state)
        singles.append(single)
    return GroupedModel(singles, network.items[0].shape)  # type: ignore[union-attr]


def save_grouped(path: Path, model: GroupedModel, optimizer: GroupedOptimizer | None = None) -> None:
    """Model tensors under `model.`, optimizer tensors under `optim.`, written atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{name}": t.detach().contiguous() for name, t in model.state_dict().items()}
    if optimizer is not None:
        tensors.update({f"optim.{name}": t.contiguous() for name, t in optimizer.state_dict().items()})
    with atomic_path(Path(path), "grouped checkpoint") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "copies": str(model.copies)})


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except (OSError, SafetensorError) as err:
        raise ArchlangError(f"cannot read the grouped checkpoint: {err}", path=str(path)) from None
    return metadata, tensors


def load_grouped(path: Path, model: GroupedModel, optimizer: GroupedOptimizer | None = None) -> None:
    """Restore what save_grouped wrote into a model (and optimizer) of the same network and copies."""
    metadata, tensors = _read(Path(path))
    if metadata.get("format") != FORMAT or metadata.get("copies") != str(model.copies):
        raise ArchlangError(f"not a grouped checkpoint of {model.copies} copies "
                            f"(format {metadata.get('format')!r}, copies {metadata.get('copies')!r})",
                            path=str(path), hint="grouped checkpoints are written by save_grouped")
    weights = {name[len("model."):]: t for name, t in tensors.items() if name.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise ArchlangError(f"the grouped checkpoint is of another network: {shorten(first, 100)}",
                            path=str(path)) from None
    if optimizer is not None:
        state = {name[len("optim."):]: t for name, t in tensors.items() if name.startswith("optim.")}
        if "step" not in state:
            raise ArchlangError("the grouped checkpoint holds no optimizer state", path=str(path),
                                hint="it was saved without its optimizer; resume needs both")
        optimizer.load_state_dict(state)
