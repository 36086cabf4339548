"""A rich progress bar with loss, error and time left; silent when disabled."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
        self.task: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                transient=True)
            self.bar.start()

    def epoch(self, description: str, total: int, done: int) -> None:
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(description, total=total, completed=done, stats="")

    def advance(self, steps: int, stats: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=steps, stats=stats)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
