"""What a run tells while it trains: a start-up header, CSV and TensorBoard logs per epoch and every
N steps, a plain progress line every N steps when stderr is no terminal (a log file, a SLURM job),
and a last line saying why it stopped and how to continue.

TensorBoard event files (run folder's tensorboard/) need the `[logs]` extra; without tensorboard
they are skipped and the header says so once: the CSV logs carry the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from archlang.runs import MetricsRow, RunFolder

STEP_FIELDS = ("step", "epoch", "train_loss", "train_error", "lr", "seconds")
EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_error", "test_loss", "test_error", "lr", "seconds", "mean_k")


def _tensorboard(run: RunFolder, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError (not ModuleNotFoundError) when tensorboard is absent
        return None
    # After a resume, events past the checkpoint (written before a kill) are dropped; those at its step
    # were logged before it was written, and stay.
    return SummaryWriter(log_dir=str(run.tensorboard_dir), purge_step=None if purge_step is None else purge_step + 1)


class TrainLog:
    """The logs of rank 0 (other processes get one with enabled=False, which writes nothing)."""

    def __init__(self, run: RunFolder, *, enabled: bool, every: int, plain: bool, log: Callable[[str], None],
                 resumed_at: int | None) -> None:
        self.run, self.enabled, self.every, self.plain, self.log = run, enabled, every, plain, log
        self.last_logged = resumed_at or 0
        self.writer = None
        if enabled:
            run.trim_step_log(resumed_at or 0)
            self.writer = _tensorboard(run, resumed_at) if every else None

    def header(self, lines: list[tuple[str, str]]) -> None:
        if not self.enabled:
            return
        tb = str(self.run.tensorboard_dir) if self.writer is not None else \
            "off (tensorboard is not installed: pip install 'archlang[logs]')"
        width = max(len(k) for k, _ in lines + [("tensorboard", "")])
        for key, value in [*lines, ("tensorboard", tb)]:
            self.log(f"{key:<{width}}  {value}")

    def step(self, *, global_step: int, epoch: int, step: int, steps: int, loss: float, error: float, lr: float,
             seconds: float) -> None:
        """At a read-back: log when at least `every` steps passed since the last line."""
        if not self.enabled or not self.every or global_step - self.last_logged < self.every:
            return
        self.last_logged = global_step
        row = {"step": global_step, "epoch": epoch + 1, "train_loss": loss, "train_error": error, "lr": lr,
               "seconds": round(seconds, 3)}
        self.run.append_log_row("steps", STEP_FIELDS, row)
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, global_step)
            self.writer.add_scalar("train/error", error, global_step)
            self.writer.add_scalar("lr", lr, global_step)
        if self.plain:
            self.log(f"epoch {epoch + 1} step {step}/{steps}: loss {loss:.4f}, error {error:.2f}%, lr {lr:.4g}, "
                     f"{seconds:.1f} s")

    def epoch(self, row: MetricsRow, global_step: int) -> None:
        if not self.enabled:
            return
        k = list(row.gates_k.values())
        values = {**row.as_dict(), "step": global_step, "mean_k": sum(k) / len(k) if k else None}
        self.run.append_log_row("epochs", EPOCH_FIELDS, {f: values.get(f) for f in EPOCH_FIELDS})
        if self.writer is not None:
            for tag, value in (("test/error", row.test_error), ("test/loss", row.test_loss),
                               ("epoch/train_loss", row.train_loss), ("epoch/train_error", row.train_error),
                               ("gates/mean_k", values["mean_k"])):
                if value is not None:
                    self.writer.add_scalar(tag, value, global_step)
            self.writer.flush()

    def close(self, why: str, resume_command: str | None) -> None:
        """The last line: why the run stopped, and the command that continues it."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.enabled:
            self.log(f"stopped: {why}" + (f"; continue with: {resume_command}" if resume_command else ""))


def stop_reason(status: str, *, max_steps: int | None, steps: int, time_limit_s: float | None,
                signum: int | None, folder: object) -> tuple[str, str | None]:
    """(why the run stopped, the command that continues it or None)."""
    resume = f"archlang train --resume {folder}"
    if status == "finished":
        return "finished", None
    if status == "stopped" and max_steps is not None and steps >= max_steps:
        return f"--max-steps {max_steps} reached", resume
    if status == "stopped":
        return f"--time-limit {(time_limit_s or 0) / 60:g} minutes reached", resume
    if status == "interrupted":
        import signal

        return f"interrupted by {signal.Signals(signum).name if signum else 'a signal'}", resume
    if status == "diverged":
        return "diverged (the loss is not finite)", None
    return status, resume


def header_lines(*, spec: str, params: int, recipe: Any, recipe_name: str, dataset: str, train_images: int,
                 test_images: int, device: str, threads: int, processes: int, folder: object,
                 resumed: tuple[int, int] | None) -> list[tuple[str, str]]:
    """What a run is, printed once before its first step."""
    from archlang.errors import shorten

    where = str(folder) + (f" (resuming at epoch {resumed[0] + 1}, step {resumed[1]})" if resumed else "")
    procs = f", {processes} processes" if processes > 1 else ""
    return [("spec", shorten(spec, 160)), ("parameters", f"{params:,}"),
            ("recipe", (f"{recipe_name}: {recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.lr:g}, "
                       f"weight decay {recipe.weight_decay:g}, seed {recipe.seed}")),
            ("dataset", f"{dataset}: {train_images:,} training images, {test_images:,} test images"),
            ("device", f"{device}, {threads} threads{procs}"), ("run folder", where)]
