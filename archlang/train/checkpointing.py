"""Writing checkpoints during training, and putting one back into a model and its optimizer.

On a GPU the state is first copied to the host, then written by one background thread while
training goes on: at most one write is in flight (the next waits for it), and every write is
finished before the run ends. On CPU the copy would cost what the write saves, so it is written
in place, synchronously.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlang.errors import ArchlangError
from archlang.runs import checkpoint as ckpt


class CheckpointWriter:
    def __init__(self, folder: Path, *, background: bool) -> None:
        self.folder = folder
        self.background = background
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint") if background else None
        self._pending: Future[Path] | None = None
        self.good: Path | None = None  # the newest checkpoint known to be complete

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             progress: ckpt.Progress) -> Path:
        self.flush()  # at most one in flight; its errors surface here, not lost in the thread
        snap = ckpt.snapshot(model, optimizer, scheduler, progress, copy=self.background)
        if self._pool is None:
            self.good = ckpt.write_snapshot(self.folder, snap)
            return self.good
        self._pending = self._pool.submit(ckpt.write_snapshot, self.folder, snap)
        return self.folder / snap.name

    def flush(self) -> Path | None:
        """Wait for the write in flight; returns the newest complete checkpoint."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.good = pending.result()
        return self.good

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def _check_tensors(state: dict[str, torch.Tensor], model: nn.Module, path: Path) -> None:
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        raise ArchlangError(f"checkpoint does not fit this network ({detail})", path=str(path),
                            hint="it was written for another network: move it out of checkpoints/")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            raise ArchlangError(f"checkpoint does not fit this network ({key} is {got.dtype} {tuple(got.shape)}, "
                                f"the network's is {want.dtype} {tuple(want.shape)})", path=str(path),
                                hint="it was written for another network: move it out of checkpoints/")


def _check_optimizer_state(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """torch loads optimizer state of any shape and fails at the next step: check it now."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ArchlangError(f"checkpoint's optimizer state does not fit ({name} has shape "
                                        f"{tuple(value.shape)}, its parameter {tuple(p.shape)})", path=str(path))


def load_into(state: ckpt.Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Model, optimizer and scheduler state from a verified checkpoint; anything that does not fit is one error."""
    _check_tensors(state.model, model, state.path)
    try:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ArchlangError(f"checkpoint's optimizer or scheduler state does not fit ({first})", path=str(state.path),
                            hint="it was written with another optimizer or recipe") from None
    _check_optimizer_state(optimizer, state.path)
