"""The run folder: the one place that knows its file names and reads or writes them.

runs/<name>/
  spec.arch            the spec as given
  spec.canonical.arch  its canonical text
  recipe.given.yaml    the recipe YAML as given, plus the overrides applied on top
  recipe.resolved.yaml every field after merging
  run.json             identity hashes, dataset origin, options, versions, environment
  metrics.jsonl        one JSON object per finished epoch
  epochs.csv           the same numbers per epoch, as CSV (with the global step)
  steps.csv            training loss, error and lr every --log-every steps
  tensorboard/         TensorBoard event files of both (with the [logs] extra)
  checkpoints/         atomic safetensors checkpoints (the newest two)
  model.safetensors    final weights
  summary.json         how the run ended, final numbers
  .lock                held (flock) by the process writing the run
  *.png                plots

Everything read is validated (records.py): a damaged file is one ArchlangError naming it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from archlang.errors import ArchlangError, shorten
from archlang.fileio import atomic_write_text
from archlang.runs.identity import RunIdentity
from archlang.runs.lock import RunLock
from archlang.runs.records import MetricsRow, RunInfo, Summary

if TYPE_CHECKING:
    import torch

M = TypeVar("M", bound=BaseModel)
MAX_TEXT = 16 << 20  # run-folder text files are small; a bigger one is not ours


def validation_message(err: ValidationError) -> str:
    """The first problem of a Pydantic error, as `field: message`."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "top level"
    return shorten(f"{where}: {first['msg']}", 200)


def _step_of(line: str, column: int) -> int:
    """The step of a CSV log row (one this code wrote); a damaged row sorts past every checkpoint."""
    cells = line.split(",")
    try:
        return int(cells[column])
    except (IndexError, ValueError):
        return 1 << 62


class RunFolder:
    SPEC, CANONICAL = "spec.arch", "spec.canonical.arch"
    RECIPE_GIVEN, RECIPE_RESOLVED = "recipe.given.yaml", "recipe.resolved.yaml"
    INFO, METRICS, SUMMARY, MODEL = "run.json", "metrics.jsonl", "summary.json", "model.safetensors"
    CHECKPOINTS, LOCK = "checkpoints", ".lock"
    LOGS: ClassVar[dict[str, str]] = {"steps": "steps.csv", "epochs": "epochs.csv"}
    TENSORBOARD = "tensorboard"
    ANALYSIS = "analysis"  # what analyses of the run (archlang gates, prune, ...; reproduce/) write beside it

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = RunLock(self.path / self.LOCK, self.path)
        self._made = False  # this object made the folder (create): release() may remove it again

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---- creating, opening, locking ---------------------------------------------------

    @classmethod
    def create(cls, path: str | Path) -> RunFolder:
        """A new run folder, locked; refused if a run was already started there."""
        run = cls(path)
        made = not run.path.exists()
        run._make_dir()
        run.lock()
        run._made = made
        if run.is_run():
            run.unlock()
            raise ArchlangError("run folder already exists", path=str(run.path),
                                hint=f"continue it with --resume {run.path}, or pick another --name")
        return run

    @classmethod
    def open(cls, path: str | Path, *, lock: bool = False) -> RunFolder:
        """An existing run folder (with its run.json), locked for writing when `lock`."""
        run = cls(path)
        if not run.path.is_dir():
            raise ArchlangError("run folder not found", path=str(run.path))
        if not run.is_run():
            raise ArchlangError("not a run folder (no run.json)", path=str(run.path),
                                hint="give a folder written by `archlang train`")
        if lock:
            run.lock()
        return run

    def is_run(self) -> bool:
        return (self.path / self.INFO).exists()

    def _make_dir(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchlangError(f"run folder is not writable ({exc.strerror or exc})", path=str(self.path),
                                hint="choose another folder with --out") from None

    def lock(self) -> None:
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    def release(self) -> None:
        """Unlock at the end of a call; a folder that create() made for a run that never started (no
        run.json: refused before training, e.g. by its data) is removed, so a refusal leaves no litter.
        Only while it holds nothing but the lock: anything else found in it is kept."""
        unstarted = self._made and self._lock.held and not self.is_run()
        if unstarted:
            with contextlib.suppress(OSError):
                (self.path / self.LOCK).unlink()  # while still held: a writer that opened it meanwhile fails
        self.unlock()
        if unstarted:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # refused (kept) when anything else is in it

    # ---- identity ---------------------------------------------------------------------

    def write_identity(self, ident: RunIdentity, extra: dict[str, Any]) -> RunInfo:
        def line_ended(text: str) -> str:
            return text if text.endswith("\n") else text + "\n"

        info = RunInfo.model_validate({"spec_hash": ident.spec_hash, "recipe_hash": ident.recipe_hash,
                                       "run_hash": ident.run_hash, "subset": ident.subset, **extra})
        self._write(self.SPEC, line_ended(ident.spec_text))
        self._write(self.CANONICAL, line_ended(ident.canonical))
        self._write(self.RECIPE_GIVEN, ident.recipe_given)
        self._write(self.RECIPE_RESOLVED, yaml.safe_dump(ident.recipe_resolved, sort_keys=False))
        self._write(self.INFO, json.dumps(info.as_dict(), indent=2) + "\n")
        return info

    def read_info(self) -> RunInfo:
        return self._read_model(self.INFO, RunInfo)

    def read_group(self) -> dict[str, Any] | None:
        """The `group` record of a grouped copy's run.json ({"seeds": [...], "folders": [...]}), None for a single run."""
        group = self.read_info().as_dict().get("group")
        if group is None:
            return None
        if (not isinstance(group, dict) or not isinstance(group.get("seeds"), list)
                or not isinstance(group.get("folders"), list) or len(group["seeds"]) != len(group["folders"])):
            raise ArchlangError("run.json's group record is damaged", path=str(self.path / self.INFO))
        return group

    def check_resume(self, ident: RunIdentity) -> RunInfo:
        """Refuse to continue a run with a different spec, recipe or data."""
        saved = self.read_info()
        if saved.spec_hash != ident.spec_hash:
            raise ArchlangError("cannot resume: the spec differs from the one this run was started with",
                                path=str(self.path), hint=f"compare with {self.path / self.CANONICAL}, or start a new run")
        if saved.recipe_hash != ident.recipe_hash:
            before = self.read_recipe()
            now = ident.recipe_resolved
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise ArchlangError(f"cannot resume: the recipe differs from this run's ({', '.join(changed) or 'unknown fields'} changed)",
                                path=str(self.path), hint="resume with the same recipe and overrides, or start a new run")
        return saved

    # ---- spec and recipe ----------------------------------------------------------------

    def read_spec(self) -> tuple[str, str]:
        """(text, file name) of the spec as given; it must be UTF-8 text."""
        return self.read_text(self.SPEC), str(self.path / self.SPEC)

    @property
    def recipe_path(self) -> Path:
        return self.path / self.RECIPE_RESOLVED

    def read_recipe(self) -> dict[str, Any]:
        """recipe.resolved.yaml as a mapping (plain YAML only: tags that build objects are refused)."""
        text = self.read_text(self.RECIPE_RESOLVED)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = shorten(str(getattr(exc, "problem", None) or exc).splitlines()[0], 160)
            raise ArchlangError(f"recipe.resolved.yaml is not plain YAML ({problem})",
                                path=str(self.recipe_path), hint="restore it, or start a new run") from None
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ArchlangError(f"recipe.resolved.yaml must be a mapping of recipe fields, not a {type(value).__name__}",
                                path=str(self.recipe_path), hint="restore it, or start a new run")
        return value

    # ---- metrics and summary --------------------------------------------------------------

    def append_metrics(self, row: MetricsRow) -> None:
        try:
            with open(self.path / self.METRICS, "a", encoding="utf-8") as f:
                f.write(json.dumps(row.as_dict()) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            from archlang.fileio import write_error

            raise write_error(err, self.path / self.METRICS, "metrics") from None

    def rewrite_metrics(self, history: list[MetricsRow]) -> None:
        """Make metrics.jsonl agree with a checkpoint's history (after a kill or fallback)."""
        self._write(self.METRICS, "".join(json.dumps(r.as_dict()) + "\n" for r in history))

    def read_metrics(self) -> list[MetricsRow]:
        path = self.path / self.METRICS
        if not path.is_file():
            return []
        rows = []
        for number, line in enumerate(self.read_text(self.METRICS).splitlines(), 1):
            if line.strip():
                rows.append(self._parse(line, MetricsRow, f"{path}:{number}"))
        return rows

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    def append_log_row(self, kind: str, fields: Sequence[str], row: Mapping[str, Any]) -> None:
        """One row of steps.csv or epochs.csv; the header first when the file is new."""
        path = self.path / self.LOGS[kind]
        try:
            new = not path.exists()
            with open(path, "a", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(fields), lineterminator="\n")
                if new:
                    writer.writeheader()
                writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})
        except OSError as err:
            from archlang.fileio import write_error

            raise write_error(err, path, self.LOGS[kind]) from None

    def trim_step_log(self, step: int) -> None:
        """After a resume (or at a new run's start): keep only the log rows up to the checkpoint's step."""
        for name in self.LOGS.values():
            path = self.path / name
            if not path.is_file():
                continue
            lines = self.read_text(name).splitlines(keepends=True)
            header = lines[0].rstrip("\n").split(",") if lines else []
            at = header.index("step") if "step" in header else None
            kept = [line for line in lines[1:] if at is not None and _step_of(line, at) <= step]
            if kept:
                self._write(name, "".join(lines[:1] + kept))
            else:  # nothing before the checkpoint: the next row starts the file again, header first
                path.unlink()

    def write_summary(self, summary: Summary) -> None:
        self._write(self.SUMMARY, json.dumps(summary.as_dict(), indent=2) + "\n")

    def read_summary(self) -> Summary | None:
        if not (self.path / self.SUMMARY).is_file():
            return None
        return self._read_model(self.SUMMARY, Summary)

    def status(self) -> str:
        """new, running (started, no summary yet) or the summary's status."""
        if not self.is_run():
            return "new"
        summary = self.read_summary()
        return summary.status if summary else "running"

    # ---- weights and checkpoints ------------------------------------------------------------

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    def has_model(self) -> bool:
        return self.model_path.is_file()

    def write_model(self, tensors: dict[str, torch.Tensor]) -> None:
        from archlang.runs.state import save_tensors

        save_tensors(self.model_path, tensors, what="weights")

    def analysis_dir(self) -> Path:
        """The folder for analyses of this run (figures, their numbers), made if missing."""
        path = self.path / self.ANALYSIS
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise ArchlangError(f"cannot create the analysis folder ({exc.strerror or exc})", path=str(path),
                                hint="check the run folder's permissions, or give the analysis another --out") from None
        return path

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder; something else in its place is refused before any training."""
        path = self.path / self.CHECKPOINTS
        if path.exists() and not path.is_dir():
            raise ArchlangError("checkpoints/ is not a folder", path=str(path),
                                hint="move that file away; the run keeps its checkpoints there")
        return path

    def check_writable(self, needed_bytes: int) -> None:
        """Report an unwritable folder or a full disk before any training time is spent."""
        self._make_dir()
        try:
            self.checkpoints.mkdir(exist_ok=True)
            probe = self.checkpoints / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as exc:
            raise ArchlangError(f"run folder is not writable ({exc.strerror or exc})", path=str(self.path),
                                hint="choose another folder with --out") from None
        free = shutil.disk_usage(self.path).free
        if free < needed_bytes:
            raise ArchlangError(f"not enough free disk for checkpoints: {free / 2**20:.0f} MiB free, "
                                f"about {needed_bytes / 2**20:.0f} MiB needed", path=str(self.path),
                                hint="free some space or choose another folder with --out")

    # ---- plumbing -----------------------------------------------------------------------------

    def read_text(self, name: str) -> str:
        path = self.path / name
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_TEXT + 1)
        except FileNotFoundError:
            raise ArchlangError(f"the run folder has no {name}", path=str(self.path)) from None
        except OSError as exc:
            raise ArchlangError(f"{name} is unreadable ({exc.strerror or exc})", path=str(path)) from None
        if len(data) > MAX_TEXT:
            raise ArchlangError(f"{name} is over {MAX_TEXT >> 20} MiB: not a file archlang wrote", path=str(path))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArchlangError(f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                                path=str(path), hint="save it as UTF-8") from None

    def _write(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text, what=name)

    def _read_model(self, name: str, model: type[M]) -> M:
        return self._parse(self.read_text(name), model, str(self.path / name))

    @staticmethod
    def _parse(text: str, model: type[M], where: str) -> M:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ArchlangError(f"not valid JSON ({shorten(str(exc), 120)})", path=where) from None
        if not isinstance(value, dict):
            raise ArchlangError(f"expected a JSON object, found a {type(value).__name__}", path=where,
                                hint="restore the file, or start a new run") from None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise ArchlangError(f"damaged ({validation_message(exc)})", path=where,
                                hint="restore the file, or start a new run") from None
