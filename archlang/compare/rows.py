"""The rows of `archlang runs`: one per run folder, with the sweep's varying values when it has them.

Run folders are read through archlang.runs (RunFolder and its validated records) only; a sweep's
points come from its manifest (archlang.runs.sweep), so a point not started yet is a row too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlang.errors import ArchlangError
from archlang.runs import RunFolder
from archlang.runs.sweep import read_manifest

# A folder holding more run folders than this is not a runs/ folder someone means to tabulate.
MAX_RUNS = 10_000


@dataclass
class Row:
    run: str  # the run folder, as found under the folder given
    values: dict[str, str] = field(default_factory=dict)  # the sweep's varying values
    family: str | None = None
    params: int | None = None
    epochs_done: int = 0
    epochs: int | None = None
    final_test_error: float | None = None
    best_test_error: float | None = None
    mean_k: float | None = None
    status: str = "new"
    seconds: float | None = None

    def flat(self, varying: list[str]) -> dict[str, Any]:
        """The row as one flat record: the varying values first, then the numbers."""
        out: dict[str, Any] = {"run": self.run, **{v: self.values.get(v) for v in varying}}
        out.update({k: getattr(self, k) for k in COLUMNS})
        return out


COLUMNS = ("family", "params", "epochs_done", "epochs", "final_test_error", "best_test_error", "mean_k",
           "status", "seconds")


def read_row(folder: Path, label: str, values: dict[str, str] | None = None, params: int | None = None,
             family: str | None = None) -> Row:
    """A run folder's row; a folder not started yet (a sweep's point) is a row with status new.

    A damaged run is a row with status `unreadable` and a warning naming the file: one bad run
    folder must not hide the table of all the others."""
    row = Row(label, dict(values or {}), family, params)
    try:
        return _fill(row, RunFolder(folder))
    except ArchlangError as err:
        print(f"warning: {err.path or folder}: {err.message}", file=sys.stderr)
        return Row(label, dict(values or {}), family, params, status="unreadable")


def _fill(row: Row, run: RunFolder) -> Row:
    if not run.is_run():
        return row
    info = run.read_info()
    row.family, row.params, row.status = info.family or row.family, info.params or row.params, run.status()
    epochs = run.read_recipe().get("epochs")
    row.epochs = epochs if isinstance(epochs, int) else None
    history = run.read_metrics()
    summary = run.read_summary()
    errors = [m.test_error for m in history if m.test_error is not None]
    row.epochs_done = summary.epochs_done if summary else len(history)
    row.final_test_error = summary.final_test_error if summary else (errors[-1] if errors else None)
    row.best_test_error = summary.best_test_error if summary else (min(errors) if errors else None)
    row.mean_k = summary.mean_k if summary else None
    row.seconds = summary.seconds if summary else sum(m.seconds for m in history)
    if summary is not None:
        row.epochs = summary.epochs
    return row


def _sweep_rows(folder: Path) -> tuple[list[Row], list[str]] | None:
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    rows = [read_row(folder / p.name, str(folder / p.name), p.values, p.params, p.family) for p in manifest.points]
    return rows, manifest.varying


def collect(paths: list[str]) -> tuple[list[Row], list[str]]:
    """The rows of every folder given (a sweep, a run, or a folder of runs) and the varying value names."""
    rows: list[Row] = []
    varying: list[str] = []
    for text in paths:
        folder = Path(text)
        if not folder.is_dir():
            raise ArchlangError("no such folder", path=text, hint="give run folders, sweep folders or runs/")
        found = _sweep_rows(folder)
        if found is None and RunFolder(folder).is_run():
            found = [read_row(folder, text)], []
        if found is None:
            found = _folder_of_runs(folder)
        rows += found[0]
        varying += [v for v in found[1] if v not in varying]
    return rows, varying


def _folder_of_runs(folder: Path) -> tuple[list[Row], list[str]]:
    """runs/: every run folder and sweep directly inside it, in name order."""
    rows: list[Row] = []
    varying: list[str] = []
    children = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(children) > MAX_RUNS:
        raise ArchlangError(f"the folder holds more than {MAX_RUNS:,} folders", path=str(folder),
                            hint="give the run or sweep folders themselves")
    for child in children:
        found = _sweep_rows(child)
        if found is None and RunFolder(child).is_run():
            found = [read_row(child, str(child))], []
        if found is not None:
            rows += found[0]
            varying += [v for v in found[1] if v not in varying]
    if not rows:
        raise ArchlangError("no run folders here (no run.json, no sweep.json)", path=str(folder),
                            hint="give folders written by `archlang train`")
    return rows, varying
