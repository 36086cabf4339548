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

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast():
            return model(x).float().unsqueeze(0)

    return _evaluate(forward, loader, 1)[0]


@torch.no_grad()
def evaluate_grouped(model: nn.Module, loader: Any, copies: int) -> list[EvalResult]:
    """evaluate() for a grouped model (archlang.grouped): every copy sees every test batch, one pass."""
    model.eval()
    return _evaluate(lambda x: model(x.unsqueeze(0).expand(copies, *x.shape)).float(), loader, copies)


def _evaluate(forward: Callable[[torch.Tensor], torch.Tensor], loader: Any, copies: int) -> list[EvalResult]:
    """The sums of every test batch's (copies, batch, classes) logits, read back once at the end."""
    sums: torch.Tensor | None = None
    seen, classes = 0, 0
    for x, y in loader.batches(0):
        out = forward(x)
        classes = out.shape[2]
        part = _batch_sums(out, y.unsqueeze(0).expand(copies, -1))
        sums = part if sums is None else sums + part
        seen += int(y.numel())
    if sums is None:
        return [EvalResult(0.0, 0.0, None)] * copies
    n = max(1, seen)
    return [EvalResult(row[0] / n, 100.0 * row[1] / n, 100.0 * row[2] / n if classes > 5 else None)
            for row in sums.tolist()]


def _batch_sums(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per copy: summed loss, top-1 errors and (with more than 5 classes) top-5 errors, in float64."""
    copies, batch, classes = out.shape
    losses = F.cross_entropy(out.reshape(copies * batch, classes), targets.reshape(-1), reduction="none")
    columns = [losses.double().view(copies, batch).sum(1), (out.argmax(2) != targets).sum(1).double()]
    if classes > 5:
        columns.append((out.topk(5, dim=2).indices != targets[..., None]).all(dim=2).sum(1).double())
    return torch.stack(columns, 1)
