"""Saving and loading bare weights without pickled code: safetensors, or .pt read with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archlang.errors import ArchlangError


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write the state dict atomically: to a temporary file first, then renamed over `path`."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    try:
        if path.suffix == ".safetensors":
            save_file(state, str(tmp), metadata=metadata or {})
        else:
            torch.save(state, tmp)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ArchlangError(f"cannot write weights: {err.strerror}", path=str(path)) from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or .pt; never unpickles code."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ArchlangError("no such weights file", path=str(path))
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, ValueError) as err:
        raise ArchlangError(f"cannot read weights ({err})", path=str(path),
                            hint="the file is truncated or not a weights file") from None
