"""The run folder: what was asked, what was resolved, and what happened.

runs/<name>/
  spec.arch            the spec as given
  spec.canonical.arch  its canonical text
  recipe.given.yaml    the recipe YAML as given, plus the overrides applied on top
  recipe.resolved.yaml every field after merging
  run.json             hashes of both, dataset origin, options, versions
  metrics.jsonl        one JSON object per epoch
  checkpoints/         atomic safetensors checkpoints (the newest two)
  model.safetensors    final weights
  summary.json         final numbers
  *.png                plots
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from archlang.errors import ArchlangError
from archlang.fileio import atomic_write_text


@dataclass(frozen=True)
class RunIdentity:
    spec_text: str
    canonical: str
    recipe_given: str
    recipe_resolved: dict[str, Any]

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()

    @property
    def recipe_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe_resolved, sort_keys=True).encode()).hexdigest()

    @property
    def run_hash(self) -> str:
        return hashlib.sha256(f"{self.spec_hash}:{self.recipe_hash}".encode()).hexdigest()


def write_identity(folder: Path, ident: RunIdentity, extra: dict[str, Any]) -> None:
    atomic_write_text(folder / "spec.arch", ident.spec_text if ident.spec_text.endswith("\n") else ident.spec_text + "\n")
    atomic_write_text(folder / "spec.canonical.arch", ident.canonical if ident.canonical.endswith("\n") else ident.canonical + "\n")
    atomic_write_text(folder / "recipe.given.yaml", ident.recipe_given)
    atomic_write_text(folder / "recipe.resolved.yaml", yaml.safe_dump(ident.recipe_resolved, sort_keys=False))
    run = {"spec_hash": ident.spec_hash, "recipe_hash": ident.recipe_hash, "run_hash": ident.run_hash, **extra}
    atomic_write_text(folder / "run.json", json.dumps(run, indent=2) + "\n")


def read_run_hashes(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "run.json").read_text())
    except FileNotFoundError:
        raise ArchlangError("not a run folder (no run.json)", path=str(folder)) from None
    except (OSError, ValueError) as exc:
        raise ArchlangError(f"run.json is unreadable ({exc})", path=str(folder / "run.json")) from None


def check_resume_identity(folder: Path, ident: RunIdentity) -> None:
    """Refuse to continue a run with a different spec or recipe."""
    saved = read_run_hashes(folder)
    if saved.get("spec_hash") != ident.spec_hash:
        raise ArchlangError("cannot resume: the spec differs from the one this run was started with",
                            path=str(folder), hint=f"compare with {folder / 'spec.canonical.arch'}, or start a new run")
    if saved.get("recipe_hash") != ident.recipe_hash:
        before = yaml.safe_load((folder / "recipe.resolved.yaml").read_text()) if (folder / "recipe.resolved.yaml").is_file() else {}
        changed = sorted(k for k in set(before) | set(ident.recipe_resolved) if before.get(k) != ident.recipe_resolved.get(k))
        raise ArchlangError(f"cannot resume: the recipe differs from this run's ({', '.join(changed) or 'unknown fields'} changed)",
                            path=str(folder), hint="resume with the same recipe and overrides, or start a new run")


def check_writable(folder: Path, needed_bytes: int) -> None:
    """Report an unwritable folder or a full disk before any training time is spent."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise ArchlangError(f"run folder is not writable ({exc.strerror or exc})", path=str(folder),
                            hint="choose another folder with --out") from None
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise ArchlangError(f"not enough free disk for checkpoints: {free / 2**20:.0f} MiB free, "
                            f"about {needed_bytes / 2**20:.0f} MiB needed", path=str(folder),
                            hint="free some space or choose another folder with --out")


def append_metrics(folder: Path, record: dict[str, Any]) -> None:
    with open(folder / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def rewrite_metrics(folder: Path, history: list[dict[str, Any]]) -> None:
    """Make metrics.jsonl agree with a checkpoint's history (after a kill or fallback)."""
    atomic_write_text(folder / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
