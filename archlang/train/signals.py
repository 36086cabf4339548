"""SIGTERM and SIGINT end a training cleanly: the loop sees the signal at its next step, writes a
checkpoint of that step and a summary marked "interrupted", and the command exits 143 or 130
(the shell's codes for those signals) with a line saying how to continue."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Self


class TrainingInterrupted(Exception):
    """Raised by train() after an interrupted run was checkpointed; the CLI turns it into its exit code."""

    def __init__(self, signum: int, folder: Path, epoch: int, step: int) -> None:
        self.signum, self.folder = signum, folder
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at epoch {epoch + 1}, step {step}; checkpoint written. "
                         f"Continue with: archlang train --resume {folder}")


class SignalWatch:
    """Records SIGTERM/SIGINT while installed (main thread only; elsewhere a no-op)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:  # a second one: the user insists, stop at once
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
        self.received = signum

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
