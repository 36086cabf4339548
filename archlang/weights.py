"""Saving and loading bare weights without pickled code: safetensors, or .pt read with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archlang.errors import ArchlangError
from archlang.fileio import atomic_write_bytes


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write the state dict atomically (temporary file, fsync, rename), as checkpoints are written."""
    import io

    from safetensors.torch import save


    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        data = save(state, metadata=metadata or {})
    else:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    atomic_write_bytes(path, data, "weights")


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
