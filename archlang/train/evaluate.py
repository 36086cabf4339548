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


@torch.no_grad()
def evaluate_grouped(model: nn.Module, loader: Any, copies: int) -> list[EvalResult]:
    """evaluate() for a grouped model (archlang.grouped): every copy sees every test batch, one pass."""
    model.eval()
    sums: torch.Tensor | None = None
    seen, classes = 0, 0
    for x, y in loader.batches(0):
        out = model(x.unsqueeze(0).expand(copies, *x.shape)).float()  # (G, B, classes)
        classes = out.shape[2]
        targets = y.unsqueeze(0).expand(copies, -1)
        batch = [F.cross_entropy(out.transpose(1, 2), targets, reduction="none").double().sum(1),
                 (out.argmax(2) != targets).sum(1).double()]
        if classes > 5:
            batch.append((out.topk(5, dim=2).indices != targets[..., None]).all(dim=2).sum(1).double())
        part = torch.stack(batch, 1)
        sums = part if sums is None else sums + part
        seen += int(y.numel())
    if sums is None:
        return [EvalResult(0.0, 0.0, None)] * copies
    n = max(1, seen)
    return [EvalResult(row[0] / n, 100.0 * row[1] / n, 100.0 * row[2] / n if classes > 5 else None)
            for row in sums.tolist()]
