"""Atomic, pickle-free checkpoints.

One checkpoint is one safetensors file: the model weights, the optimizer's tensor
state and the RNG states as tensors; every scalar (optimizer hyperparameters,
scheduler state, epoch/step, metric history, python/numpy RNG) as JSON in the
safetensors metadata; plus a SHA-256 of all tensor bytes, so a bit flip is caught
as well as a truncation. Files are written to a temporary name in the same folder,
fsynced, renamed over, and the folder fsynced: a kill at any moment leaves either
the old or the new checkpoint, never half of one. The previous checkpoint is kept
until a newer one is complete, so a damaged newest file falls back to it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlang.errors import ArchlangError
from archlang.fileio import atomic_write_bytes, atomic_write_text, fsync_dir  # noqa: F401 (re-exported)

CHECKPOINT_RE = re.compile(r"^ckpt-e(\d{5})-s(\d{7})\.safetensors$")
KEEP = 2


# ---- (de)serialising optimizer and RNG state without pickle -------------------------------


def _split_state(prefix: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested structure into `tensors`; return the JSON-able rest."""
    if isinstance(value, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {"__dict__": [[_json_key(k), _split_state(f"{prefix}.{k}", v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_split_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint a {type(value).__name__} at {prefix}")


def _json_key(key: Any) -> Any:
    if isinstance(key, (int, str)):
        return key
    raise TypeError(f"cannot checkpoint a dict key of type {type(key).__name__}")


def _join_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__tuple__" in value:
            return tuple(_join_state(v, tensors) for v in value["__tuple__"])
        return {k: _join_state(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_join_state(v, tensors) for v in value]
    return value


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    scalars = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [py_version, list(py_state), py_gauss]}
    return tensors, scalars


def restore_rng(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = scalars["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]
    rng_scalars: dict[str, Any]
    progress: dict[str, Any]  # epoch, step, accumulators, metric history, run hash


def checkpoint_name(epoch: int, step: int) -> str:
    return f"ckpt-e{epoch:05d}-s{step:07d}.safetensors"


def save_checkpoint(
    folder: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    step: int,
    progress: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically, then drop all but the newest KEEP."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensors[f"model.{key}"] = value.detach().cpu().contiguous()
    optim_json = _split_state("optim", optimizer.state_dict(), tensors)
    rng_tensors, rng_scalars = capture_rng()
    tensors.update(rng_tensors)
    meta = {
        "format": "archlang-checkpoint-1",
        "optimizer": json.dumps(optim_json),
        "scheduler": json.dumps(scheduler.state_dict()),
        "rng": json.dumps(rng_scalars),
        "progress": json.dumps(progress),
        "digest": _digest(tensors),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint_name(epoch, step)
    atomic_write_bytes(path, save(tensors, metadata=meta))
    for old in list_checkpoints(folder)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name))


def read_checkpoint(path: Path) -> Checkpoint:
    """Load and verify one checkpoint; any damage is an ArchlangError naming the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open, not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArchlangError(f"checkpoint is truncated or corrupted ({exc})", path=str(path)) from None
    if meta.get("format") != "archlang-checkpoint-1":
        raise ArchlangError("not an archlang checkpoint (missing format tag)", path=str(path))
    if _digest(tensors) != meta.get("digest"):
        raise ArchlangError("checkpoint is corrupted (tensor checksum mismatch)", path=str(path))
    try:
        optimizer = _join_state(json.loads(meta["optimizer"]), tensors)
        return Checkpoint(
            path=path,
            model={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
            optimizer=optimizer,
            scheduler=json.loads(meta["scheduler"]),
            rng_tensors={k: v for k, v in tensors.items() if k.startswith("rng.")},
            rng_scalars=json.loads(meta["rng"]),
            progress=json.loads(meta["progress"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ArchlangError(f"checkpoint metadata is damaged ({exc})", path=str(path)) from None


def latest_good_checkpoint(folder: Path, warn: Any = None) -> Checkpoint | None:
    """The newest checkpoint that verifies; damaged newer ones are reported and skipped."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    if folder.is_dir():  # temporaries of writes cut short by a kill: never a checkpoint, drop them
        for stale in folder.glob(".ckpt-*.tmp-*"):
            stale.unlink(missing_ok=True)
    damaged: list[ArchlangError] = []
    for path in reversed(list_checkpoints(folder)):
        try:
            ckpt = read_checkpoint(path)
        except ArchlangError as exc:
            damaged.append(exc)
            continue
        for exc in damaged:
            warn(f"warning: {exc.render()}\n  resuming from the previous good checkpoint {path.name}")
        return ckpt
    if damaged:
        names = ", ".join(Path(e.path or "?").name for e in damaged)
        raise ArchlangError(f"no usable checkpoint: every checkpoint is damaged ({names})", path=str(folder),
                            hint=damaged[0].render())
    return None


def estimate_checkpoint_bytes(model: torch.nn.Module, optimizer_states_per_param: int) -> int:
    n = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return n * (1 + optimizer_states_per_param) + (1 << 20)
