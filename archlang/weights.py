"""Saving and loading bare weights without pickled code: safetensors, or .pt read with weights_only=True.

A weights file is untrusted input: its format is told from its first bytes (not its name), anything
but a mapping of names to finite tensors is refused, and every failure is one ArchlangError.
"""

from __future__ import annotations

import io
import pickle
import stat
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlang.errors import ArchlangError, shorten
from archlang.fileio import atomic_write_bytes

# The suffixes save_weights understands; anything else is refused as an output name.
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since 1.6
_PICKLE_MAGIC = 0x80  # torch.save(..., _use_new_zipfile_serialization=False): a pickle, protocol >= 2
_CHECKPOINT_FORMAT = "archlang-checkpoint"  # the metadata tag of `archlang train` checkpoints
_CORRUPT_TORCH = "cannot read the weights: the torch.save file is truncated or corrupted"
_HINT = "archlang reads .safetensors files and state dicts saved with torch.save(model.state_dict(), path)"


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write the state dict atomically (temporary file, fsync, rename), as checkpoints are written."""
    atomic_write_bytes(path, weights_bytes(model, path, metadata), "weights")


def weights_bytes(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> bytes:
    """The serialised state dict, in the format `path`'s suffix names."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        return save(state, metadata=metadata or {})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _check_file(path: Path) -> int:
    """The file's size; FIFOs, devices and folders are refused before anything is read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ArchlangError("no such weights file", path=str(path)) from None
    except OSError as err:
        raise ArchlangError(f"cannot read the weights: {err.strerror}", path=str(path)) from None
    if stat.S_ISDIR(info.st_mode):
        raise ArchlangError("the weights path is a folder, not a file", path=str(path),
                            hint="give the weights file, or the run folder itself as the target")
    if not stat.S_ISREG(info.st_mode):
        raise ArchlangError("the weights path is not a regular file", path=str(path), hint=_HINT)
    if info.st_size == 0:
        raise ArchlangError("the weights file is empty", path=str(path))
    return info.st_size


def _format(path: Path, size: int) -> str:
    """'safetensors' or 'torch', told from the first bytes, whatever the file is called."""
    with open(path, "rb") as f:
        head = f.read(9)
    header_length = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    if 0 < header_length <= size - 8 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(_ZIP_MAGIC) or head[:1] == bytes([_PICKLE_MAGIC]):
        return "torch"
    raise ArchlangError("not a weights file (neither safetensors nor torch.save)", path=str(path), hint=_HINT)


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open, not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError):
        raise ArchlangError("cannot read the weights: the safetensors file is truncated or corrupted",
                            path=str(path)) from None
    if str(meta.get("format", "")).startswith(_CHECKPOINT_FORMAT):
        raise ArchlangError("this is a training checkpoint, not a weights file", path=str(path),
                            hint="give the run folder (its newest good checkpoint is used), or its model.safetensors")
    return state


# What torch.load raises on damaged bytes (measured over 1,100 mutated files: UnpicklingError, RuntimeError,
# UnicodeDecodeError, EOFError, IndexError, struct.error, KeyError, AssertionError, TypeError, ValueError).
_DAMAGED = (RuntimeError, ValueError, EOFError, IndexError, KeyError, TypeError, AttributeError, AssertionError,
            OverflowError, MemoryError, OSError, struct.error, zipfile.BadZipFile)


def _read_torch(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged pickles warn about odd protocols before failing
            # A file object, not the path: given a path, torch.load goes by its suffix (.safetensors).
            with open(path, "rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):  # torch's safe unpickler met something other than tensors
            raise ArchlangError("refused to load the weights: the file holds pickled objects other than tensors "
                                "(nothing was run)", path=str(path), hint=_HINT) from None
        raise ArchlangError(_CORRUPT_TORCH, path=str(path)) from None
    except _DAMAGED:
        raise ArchlangError(_CORRUPT_TORCH, path=str(path)) from None


def _type_name(value: object) -> str:
    name = {dict: "mapping", list: "list", tuple: "tuple"}.get(type(value), type(value).__name__)
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def check_state(state: Any, where: str) -> dict[str, torch.Tensor]:
    """A state dict: names to finite tensors; anything else is one message."""
    if not isinstance(state, Mapping):
        raise ArchlangError(f"not a state dict: the file holds {_type_name(state)}, not a mapping of names to "
                            "tensors", path=where, hint=_HINT)
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ArchlangError(f"not a state dict: '{shorten(str(key))}' is {_type_name(value)}, not a tensor",
                                path=where, hint=_HINT)
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ArchlangError(f"the weights hold NaN or infinite values (first in '{shorten(key)}')", path=where,
                                hint="the training diverged: use an earlier checkpoint")
    return dict(state)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or torch.save file; never unpickles code."""
    path = Path(path)
    size = _check_file(path)
    state = _read_safetensors(path) if _format(path, size) == "safetensors" else _read_torch(path)
    return check_state(state, str(path))


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def misfit(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps `state` from loading into a module whose state dict is `own`: the first misshapen,
    missing or unexpected tensor, or None when it fits."""
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        return (f"'{shorten(k)}' is {_shape(state[k])} in the file but {_shape(own[k])} here "
                f"({len(wrong)} tensors differ)")
    missing = [k for k in own if k not in state]
    if missing:
        return f"'{shorten(missing[0])}' is missing from the file ({len(missing)} of {len(own)} tensors missing)"
    extra = [k for k in state if k not in own]
    if extra:
        return f"the file has '{shorten(extra[0])}', which the network lacks ({len(extra)} extra tensors)"
    return None


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], where: str, assign: bool = False,
              what: str = "this network") -> None:
    """Load a state dict strictly; a misfit is one message naming the first tensor that differs."""
    problem = misfit(model.state_dict(), state)
    if problem is not None:
        raise ArchlangError(f"the weights do not fit {what}: {problem}", path=where,
                            hint="use the spec the weights were trained with")
    model.load_state_dict(state, assign=assign)


def read_weights(arg: str, compiled: Any) -> dict[str, torch.Tensor]:
    """The state dict `--weights ARG` names for the network `compiled`: a weights file, or
    `torchvision:NAME=FILE` (a torchvision state dict, paired with this network by structure)."""
    from archlang.transplant import PREFIX, state_from_arg

    if arg.startswith(PREFIX):
        with torch.device("meta"):  # only the structure is needed: nothing allocated
            target = compiled.build()
        return state_from_arg(arg, target)
    return load_weights(Path(arg))
