"""Atomic, pickle-free, verified checkpoints.

One checkpoint is one safetensors file: the model weights and the optimizer's tensor state as
tensors; the optimizer's and scheduler's scalars and the typed Progress (epoch, step, epoch totals,
metric history, every process's RNG state, run identity) as JSON metadata; plus a SHA-256 over the
tensor bytes AND the metadata, so any edited byte (a bit flip, `"step": 3` made 7) is caught. The
previous checkpoint is kept until a newer one is complete, so a damaged newest file falls back to it.
Files written before the metadata was covered (format 1) still load, their tensors verified.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from archlang.errors import ArchlangError
from archlang.runs.records import Progress
from archlang.runs.state import save_tensors, to_host

FORMAT, LEGACY_FORMAT = "archlang-checkpoint-2", "archlang-checkpoint-1"
CHECKPOINT_RE = re.compile(r"^ckpt-e(\d{5})-s(\d{7})\.safetensors$")
KEEP = 2


def checkpoint_name(epoch: int, step: int) -> str:
    return f"ckpt-e{epoch:05d}-s{step:07d}.safetensors"


# ---- optimizer state without pickle: tensors out, JSON-able rest ---------------------------


def _split_state(prefix: str, value: Any, tensors: dict[str, torch.Tensor], copy: bool) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[prefix] = to_host(value, copy=copy)
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {"__dict__": [[_json_key(k), _split_state(f"{prefix}.{k}", v, tensors, copy)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_split_state(f"{prefix}.{i}", v, tensors, copy) for i, v in enumerate(value)]
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


def _digest(tensors: dict[str, torch.Tensor], meta: dict[str, str] | None) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}{t.dtype}{tuple(t.shape)}".encode())  # format 1's order, so its files still verify
        if t.numel():
            h.update(t.contiguous().view(-1).view(torch.uint8).numpy())  # a view: no copy of the bytes
    if meta is not None:
        h.update(json.dumps({k: v for k, v in meta.items() if k != "digest"}, sort_keys=True).encode())
    return h.hexdigest()


# ---- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything a checkpoint holds, already on the host: writing it needs nothing from training."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, str]
    name: str


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, progress: Progress,
             *, copy: bool) -> Snapshot:
    """Capture the training state; `copy` when it is written while training goes on (a GPU run)."""
    tensors = {f"model.{k}": to_host(v, copy=copy) for k, v in model.state_dict().items()}
    optim_json = _split_state("optim", optimizer.state_dict(), tensors, copy)
    meta = {"format": FORMAT, "optimizer": json.dumps(optim_json), "scheduler": json.dumps(scheduler.state_dict()),
            "progress": json.dumps(progress.as_json())}
    return Snapshot(tensors, meta, checkpoint_name(progress.epoch, progress.step))


def write_snapshot(folder: Path, snap: Snapshot) -> Path:
    """Write a checkpoint atomically, then drop all but the newest KEEP."""
    meta = {**snap.meta, "digest": _digest(snap.tensors, snap.meta)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / snap.name
    save_tensors(path, snap.tensors, metadata=meta, what="checkpoint")
    for old in list_checkpoints(folder)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name))


# ---- reading -------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    progress: Progress


def _open(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open, not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise ArchlangError(f"checkpoint is truncated or corrupted ({str(exc)[:160]})", path=str(path)) from None
    return meta, tensors


def read_checkpoint(path: Path) -> Checkpoint:
    """Load and verify one checkpoint; any damage is an ArchlangError naming the file."""
    meta, tensors = _open(path)
    fmt = meta.get("format")
    if fmt not in (FORMAT, LEGACY_FORMAT):
        raise ArchlangError("not an archlang checkpoint (missing format tag)", path=str(path))
    if _digest(tensors, meta if fmt == FORMAT else None) != meta.get("digest"):
        what = "tensor or metadata" if fmt == FORMAT else "tensor"
        raise ArchlangError(f"checkpoint is corrupted ({what} checksum mismatch)", path=str(path))
    try:
        progress_json = json.loads(meta["progress"])
        if fmt == LEGACY_FORMAT:
            progress_json = _legacy_progress(progress_json, json.loads(meta["rng"]), tensors)
        return Checkpoint(
            path=path,
            model={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
            optimizer=_join_state(json.loads(meta["optimizer"]), tensors),
            scheduler=json.loads(meta["scheduler"]),
            progress=Progress.model_validate(progress_json),
        )
    except ValidationError as exc:
        from archlang.runs.folder import validation_message

        raise ArchlangError(f"checkpoint metadata is damaged ({validation_message(exc)})", path=str(path)) from None
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise ArchlangError(f"checkpoint metadata is damaged ({type(exc).__name__}: {str(exc)[:120]})",
                            path=str(path)) from None


def _legacy_progress(p: dict[str, Any], scalars: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A format-1 checkpoint's progress with its RNG (tensors + scalars + rank_rng) in today's one format."""
    b64 = lambda t: base64.b64encode(t.numpy().tobytes()).decode()
    cuda = sorted((int(k.rsplit(".", 1)[1]), b64(v)) for k, v in tensors.items() if k.startswith("rng.cuda."))
    kind, pos, has_gauss, cached = scalars["numpy"]
    keys = tensors["rng.numpy"].numpy().astype("uint32").tobytes()
    rank0 = {"torch": b64(tensors["rng.torch"]), "cuda": cuda, "python": scalars["python"],
             "numpy": {"kind": kind, "keys": base64.b64encode(keys).decode(), "pos": pos, "has_gauss": has_gauss,
                       "cached": cached}}
    others = [{"torch": r["torch"], "cuda": [[0, r["cuda"]]] if r.get("cuda") else []} for r in (p.get("rank_rng") or [])[1:]]
    rest = {k: v for k, v in p.items() if k != "rank_rng"}
    return {**rest, "rng": [rank0, *others]}


def latest_good_checkpoint(folder: Path, warn: Callable[[str], None] | None = None) -> Checkpoint | None:
    """The newest checkpoint that verifies; damaged newer ones are reported and skipped."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    if folder.is_dir():  # temporaries of writes cut short by a kill: never a checkpoint, drop them
        for stale in folder.glob(".ckpt-*.tmp-*"):
            stale.unlink(missing_ok=True)
    return _newest_good(list_checkpoints(folder), read_checkpoint, warn, "checkpoint", folder)


def _newest_good(paths: list[Path], read: Callable[[Path], Any], warn: Callable[[str], None], what: str,
                 folder: Path) -> Any:
    damaged: list[ArchlangError] = []
    for path in reversed(paths):
        try:
            ckpt = read(path)
        except ArchlangError as exc:
            damaged.append(exc)
            continue
        for exc in damaged:
            warn(f"warning: {exc.render()}\n  damaged, falling back to the previous {what} {path.name}")
        return ckpt
    if damaged:
        names = ", ".join(Path(e.path or "?").name for e in damaged)
        raise ArchlangError(f"no usable {what}: every {what} is damaged ({names})", path=str(folder),
                            hint=damaged[0].render())
    return None


def estimate_checkpoint_bytes(model: torch.nn.Module, optimizer_states_per_param: int) -> int:
    n = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return n * (1 + optimizer_states_per_param) + (1 << 20)


# ---- grouped checkpoints: G copies trained in one process (archlang.train.grouped_run) ------

GROUPED_FORMAT = "archlang-grouped-checkpoint-1"
GROUPED_RE = re.compile(r"^grouped-e(\d{5})-s(\d{7})\.safetensors$")


def grouped_checkpoint_name(epoch: int, step: int) -> str:
    return f"grouped-e{epoch:05d}-s{step:07d}.safetensors"


@dataclass
class GroupedCheckpoint:
    """The grouped model's and optimizer's tensors (copies on the first axis) and each copy's Progress."""

    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    progress: list[Progress]


def write_grouped(folder: Path, model: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor],
                  progress: list[Progress]) -> Path:
    """One file for the whole group, checksummed as a single run's; the newest KEEP are kept."""
    tensors = {**{f"model.{k}": to_host(v) for k, v in model.items()},
               **{f"optim.{k}": to_host(v) for k, v in optimizer.items()}}
    meta = {"format": GROUPED_FORMAT, "progress": json.dumps([p.as_json() for p in progress])}
    meta["digest"] = _digest(tensors, meta)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / grouped_checkpoint_name(progress[0].epoch, progress[0].step)
    save_tensors(path, tensors, metadata=meta, what="grouped checkpoint")
    for old in list_grouped(folder)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def list_grouped(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if GROUPED_RE.match(p.name))


def read_grouped(path: Path) -> GroupedCheckpoint:
    meta, tensors = _open(path)
    if meta.get("format") != GROUPED_FORMAT:
        raise ArchlangError("not an archlang grouped checkpoint (missing format tag)", path=str(path))
    if _digest(tensors, meta) != meta.get("digest"):
        raise ArchlangError("grouped checkpoint is corrupted (tensor or metadata checksum mismatch)", path=str(path))
    try:
        progress = [Progress.model_validate(p) for p in json.loads(meta["progress"])]
    except ValidationError as exc:
        from archlang.runs.folder import validation_message

        raise ArchlangError(f"grouped checkpoint metadata is damaged ({validation_message(exc)})",
                            path=str(path)) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise ArchlangError(f"grouped checkpoint metadata is damaged ({type(exc).__name__})", path=str(path)) from None
    return GroupedCheckpoint(path, _under(tensors, "model."), _under(tensors, "optim."), progress)


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def latest_good_grouped(folder: Path, warn: Callable[[str], None]) -> GroupedCheckpoint | None:
    """The newest grouped checkpoint that verifies; a damaged newer one is reported and skipped."""
    return _newest_good(list_grouped(folder), read_grouped, warn, "grouped checkpoint", folder)


def newest_good_file(folder: Path) -> Path | None:
    """The one file a resume needs from a checkpoint folder, single or grouped: its newest that verifies
    (damaged newer ones skipped silently; None when there is none, or only damaged ones). Unlike the
    latest_good_* readers it changes nothing in the folder."""
    grouped = list_grouped(folder)
    paths, read = (grouped, read_grouped) if grouped else (list_checkpoints(folder), read_checkpoint)
    try:
        found = _newest_good(paths, read, lambda message: None, "checkpoint", folder)
    except ArchlangError:  # every one damaged
        return None
    return found.path if found is not None else None
