"""Model and checkpoint tensors to disk: the one place weights are serialised.

safetensors' save_file streams the tensors into a temporary file beside the target (no copy of
the whole file in memory), which archlang.fileio.atomic_path then renames over it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archlang.fileio import atomic_path


def host_tensors(module: nn.Module, *, copy: bool = False) -> dict[str, torch.Tensor]:
    """The module's state as contiguous CPU tensors; `copy` detaches them from later training steps."""
    return {k: to_host(v, copy=copy) for k, v in module.state_dict().items()}


def to_host(t: torch.Tensor, *, copy: bool = False) -> torch.Tensor:
    t = t.detach()
    if t.device.type != "cpu":
        return t.to("cpu").contiguous()  # a new tensor already
    return t.clone(memory_format=torch.contiguous_format) if copy else t.contiguous()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], *, metadata: dict[str, str] | None = None,
                 what: str = "file") -> None:
    from safetensors.torch import save_file

    with atomic_path(path, what) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
