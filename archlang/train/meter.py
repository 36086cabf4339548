"""The current epoch's training loss and error: summed on the device, read back every N steps.

Reading a GPU value back waits for every queued kernel; once per step that stalls the pipeline.
The meter keeps the sums since the last read-back on the device, with a finite flag per step,
and one read-back (summed over the torchrun processes in the same call) adds them to the totals
and reports the first step whose loss was not finite. With N = 1 the arithmetic is exactly that
of a per-step read (float64 sums of each step's float32 loss times its batch size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from archlang.runs.records import Totals
from archlang.train import ddp


@dataclass
class ReadBack:
    first_bad: int | None  # offset, among the steps since the previous read-back, of the first non-finite loss
    bad_loss: float  # that step's loss (over all processes) when there is one
    flags: list[bool]  # the decisions passed in, true if any process took them


class Meter:
    def __init__(self, device: torch.device, ctx: ddp.DistContext, totals: Totals) -> None:
        self.device, self.ctx = device, ctx
        self.loss_sum, self.wrong, self.seen = totals.loss_sum, totals.wrong, totals.seen
        self._pending: torch.Tensor | None = None  # [loss * n summed, wrong summed]
        self._finite: list[torch.Tensor] = []
        self._losses: list[torch.Tensor] = []
        self._pending_seen = 0

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        n = int(y.numel())
        loss = loss.detach()
        part = torch.stack([loss.double() * n, (out.detach().argmax(1) != y).sum().double()])
        self._pending = part if self._pending is None else self._pending + part
        self._finite.append(torch.isfinite(loss))
        self._losses.append(loss.double() * n)
        self._pending_seen += n

    def read_back(self, decisions: list[bool]) -> ReadBack:
        """Add the pending sums of every process to the totals, unless a loss was not finite."""
        k = len(self._finite)
        assert self._pending is not None, "read_back before any step"
        local = torch.cat([self._pending, (~torch.stack(self._finite)).double(), torch.stack(self._losses)]).tolist()
        values = ddp.sum_over_ranks(self.ctx, [*local, float(self._pending_seen), *map(float, decisions)], self.device)
        loss, wrong, bad, losses = values[0], values[1], values[2:2 + k], values[2 + k:2 + 2 * k]
        seen, flags = values[2 + 2 * k], values[3 + 2 * k:]
        self._pending, self._finite, self._losses, self._pending_seen = None, [], [], 0
        first_bad = next((i for i, b in enumerate(bad) if b > 0), None)
        if first_bad is None and not math.isfinite(loss):
            first_bad = k - 1  # finite per step, overflowing in the sum
        if first_bad is not None:
            return ReadBack(first_bad, losses[first_bad] / max(1.0, seen / k), [f > 0 for f in flags])
        self.loss_sum += loss
        self.wrong += int(wrong)
        self.seen += int(seen)
        return ReadBack(None, 0.0, [f > 0 for f in flags])

    def record(self) -> tuple[float, float]:
        """(mean loss, error percent) of the epoch so far."""
        return self.loss_sum / max(1, self.seen), 100.0 * self.wrong / max(1, self.seen)

    def totals(self, seconds: float) -> Totals:
        return Totals(loss_sum=self.loss_sum, wrong=self.wrong, seen=self.seen, seconds=seconds)
