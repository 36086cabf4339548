"""The current epoch's training loss and error: summed on the device, read back every N steps.

Reading a GPU value back waits for every queued kernel; once per step that stalls the pipeline.
The meter keeps the sums since the last read-back on the device, with a finite flag per step,
and one read-back (summed over the torchrun processes in the same call) adds them to the totals
and reports the first step whose loss was not finite. With N = 1 the arithmetic is exactly that
of a per-step read (float64 sums of each step's float32 loss times its batch size). GroupMeter does
the same for the G copies of a grouped training in one batched computation per step.
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
        first_bad = _first_bad([b > 0 for b in bad], loss)
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


def _first_bad(bad: list[bool], loss_sum: float) -> int | None:
    """The first step whose loss was not finite; the last one when each was but their sum overflowed."""
    first = next((i for i, b in enumerate(bad) if b), None)
    return len(bad) - 1 if first is None and not math.isfinite(loss_sum) else first


class GroupMeter:
    """Meter's sums for G copies at once, from the (G,) losses and (G, B, C) logits of a grouped step.

    One add per step for all copies (an argmax and a sum over the batched logits: G Meter.adds cost
    about 1% of a G = 8 step of the depth-100 MLP) and one read-back of every copy's sums. The
    arithmetic per copy is Meter's exactly (float64 sums in the same order), so a grouped copy's
    totals, and an exact resume, are what its own Meter would give. A copy that diverged keeps the
    totals it had: its later sums are never added.
    """

    def __init__(self, device: torch.device, totals: list[Totals]) -> None:
        self.device = device
        self.loss_sum = [t.loss_sum for t in totals]
        self.wrong = [t.wrong for t in totals]
        self.seen = [t.seen for t in totals]
        self._pending: torch.Tensor | None = None  # (2, G): loss * n summed, wrong summed
        self._losses: list[torch.Tensor] = []  # per step, (G,): loss * n
        self._pending_seen = 0  # images per copy since the last read-back

    def add(self, losses: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        n = int(y.shape[1])
        scaled = losses.detach().double() * n
        part = torch.stack([scaled, (logits.detach().argmax(2) != y).sum(1).double()])
        self._pending = part if self._pending is None else self._pending + part
        self._losses.append(scaled)
        self._pending_seen += n

    def read_back(self, alive: list[bool]) -> list[tuple[int, float] | None]:
        """Add each alive copy's pending sums to its totals, unless one of its losses was not finite; per
        copy, (offset of that step among the steps since the last read-back, its loss) or None."""
        assert self._pending is not None, "read_back before any step"
        sums, losses = self._pending.tolist(), torch.stack(self._losses).T.tolist()  # losses[copy][step]
        n, self._pending, self._losses, self._pending_seen = self._pending_seen, None, [], 0
        found: list[tuple[int, float] | None] = []
        for i, (loss, wrong, mine) in enumerate(zip(*sums, losses)):
            bad = _first_bad([not math.isfinite(v) for v in mine], loss) if alive[i] else None
            if bad is not None:
                found.append((bad, mine[bad] / max(1, n / len(mine))))
                continue
            found.append(None)
            if alive[i]:
                self.loss_sum[i] += loss
                self.wrong[i] += int(wrong)
                self.seen[i] += n
        return found

    def record(self, copy: int) -> tuple[float, float]:
        """(mean loss, error percent) of copy's epoch so far."""
        return self.loss_sum[copy] / max(1, self.seen[copy]), 100.0 * self.wrong[copy] / max(1, self.seen[copy])

    def totals(self, copy: int, seconds: float) -> Totals:
        return Totals(loss_sum=self.loss_sum[copy], wrong=self.wrong[copy], seen=self.seen[copy], seconds=seconds)

    def reset(self, copy: int) -> None:
        """A new epoch for this copy."""
        self.loss_sum[copy], self.wrong[copy], self.seen[copy] = 0.0, 0, 0
