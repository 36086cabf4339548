"""Test-set evaluation, the one used by training and by every analysis (prune, lesion, gates).

Sums stay on the device and are read back once per evaluation, not once per batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EvalResult:
    loss: float | None
    error: float | None  # top-1, percent
    error_top5: float | None  # percent; None with 5 classes or fewer


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, autocast: Callable[[], Any] = contextlib.nullcontext) -> EvalResult:
    """Loss, top-1 and top-5 error of `model` (put in eval mode) over every batch of `loader`."""
    model.eval()
    sums: torch.Tensor | None = None
    seen, classes = 0, 0
    for x, y in loader.batches(0):
        with autocast():
            out = model(x)
        classes = out.shape[1]
        batch = [F.cross_entropy(out.float(), y, reduction="sum").double(), (out.argmax(1) != y).sum().double()]
        if classes > 5:
            batch.append((out.topk(5, dim=1).indices != y[:, None]).all(dim=1).sum().double())
        part = torch.stack(batch)
        sums = part if sums is None else sums + part
        seen += int(y.numel())
    if sums is None:
        return EvalResult(0.0, 0.0, None)
    values = sums.tolist()
    n = max(1, seen)
    top5 = 100.0 * values[2] / n if classes > 5 else None
    return EvalResult(values[0] / n, 100.0 * values[1] / n, top5)
