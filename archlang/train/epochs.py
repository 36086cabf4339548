"""What the single and the grouped trainer share: the epoch loop, the stop rule, the read-back tail.

Both trainers are one model stepped over one stream of batches (the grouped one steps G copies at
once), so they end an epoch, checkpoint and stop alike; only how the stop flags are gathered
differs (the single trainer agrees them over torchrun's processes, the grouped one runs alone).
"""

from __future__ import annotations

import time
from typing import Protocol

from archlang.runs import MetricsRow
from archlang.train.evaluate import EvalResult
from archlang.train.options import TrainOptions


class EpochLoop(Protocol):
    """The phases `run_epochs` calls; Trainer and GroupedTrainer provide them."""

    opts: TrainOptions
    start_epoch: int
    steps_this_call: int
    stopped_at: tuple[int, int]
    meter_seconds: float
    t0: float

    @property
    def epochs(self) -> int: ...
    def run_epoch(self, epoch: int) -> str | None: ...
    def end_epoch(self, epoch: int) -> None: ...
    def checkpoint(self, epoch: int, step: int) -> None: ...
    def stop_flags(self) -> tuple[bool, bool]: ...


def run_epochs(trainer: EpochLoop) -> str:
    """Epochs from the resume point on, a checkpoint at each end; returns how training ended."""
    for epoch in range(trainer.start_epoch, trainer.epochs):
        stopped = trainer.run_epoch(epoch)
        if stopped:
            return stopped
        trainer.end_epoch(epoch)
        trainer.checkpoint(epoch + 1, 0)
        stop = stop_status(trainer, *trainer.stop_flags())
        if stop and epoch + 1 < trainer.epochs:  # after the last epoch the run has finished, whatever the clock says
            trainer.stopped_at = (epoch + 1, 0)
            return stop
    return "finished"


def stop_status(trainer: EpochLoop, time_up: bool, signaled: bool) -> str | None:
    """The one stop rule: a signal ends a run "interrupted"; --max-steps or --time-limit "stopped"."""
    if signaled:
        return "interrupted"
    max_steps = trainer.opts.max_steps
    if time_up or (max_steps is not None and trainer.steps_this_call >= max_steps):
        return "stopped"
    return None


def save_or_stop(trainer: EpochLoop, epoch: int, steps_done: int, stop: str | None, save_due: bool) -> str | None:
    """At a read-back: checkpoint when due or stopping, and mark where a stopped run ends."""
    if stop or save_due:
        trainer.meter_seconds = time.monotonic() - trainer.t0
        trainer.checkpoint(epoch, steps_done)
    if stop:
        trainer.stopped_at = (epoch, steps_done)
    return stop


def epoch_row(epoch: int, train: tuple[float, float], test: EvalResult, *, lr: float, seconds: float, steps: int,
              gates_k: dict[str, float], dirac_a: dict[str, float]) -> MetricsRow:
    """An epoch's metrics row: the training meter's (mean loss, error) since the epoch began (Meter.record)
    and the test result."""
    train_loss, train_error = train
    return MetricsRow.model_validate({
        "epoch": epoch + 1, "train_loss": train_loss, "train_error": train_error,
        "test_loss": test.loss, "test_error": test.error,
        **({"test_error_top5": test.error_top5} if test.error_top5 is not None else {}),
        "lr": lr, "seconds": round(seconds, 3), "steps": steps, "gates_k": gates_k, "dirac_a": dirac_a})
