"""A sweep's points: one concrete spec per combination of its sets, named by its varying values.

Torch-free: the points, their folder names, their parameter counts (from the IR), the shard a
machine takes and the --max-params pruning are all decided before any training process starts.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from archlang.compiler import compile_all
from archlang.errors import ArchlangError, Source, shorten
from archlang.parser import parse
from archlang.sweep import canonical, resolve

# A folder name longer than this is cut and given a hash: file systems refuse names over 255 bytes.
MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


@dataclass(frozen=True)
class Point:
    """One network (and recipe point) of a sweep."""

    index: int  # 0-based position in the sweep's order (the order of `archlang params`)
    name: str  # its run folder's name: 'depth=28,k=10'
    values: tuple[tuple[str, str], ...]  # (set name, chosen value), as Compiled.point
    spec: str  # a concrete spec (no sets): the network, then its train(...) clause if any
    params: int
    family: str | None

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "name": self.name, "values": dict(self.values), "spec": self.spec,
                "params": self.params, "family": self.family}


def folder_name(values: tuple[tuple[str, str], ...]) -> str:
    """'depth=28,k=10': the varying values, with characters a file name should not hold replaced."""
    text = ",".join(f"{name}={value}" for name, value in values)
    safe = _UNSAFE.sub("_", text).strip("._") or "point"
    if safe != text or len(safe) > MAX_NAME:
        # Two texts may clean to the same name (`act="a b"` and `act="a_b"`): the hash keeps them apart.
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        safe = f"{safe[:MAX_NAME]}-{digest}"
    return safe


def sweep_points(source: Source) -> list[Point]:
    """Every point of a spec, in the sweep's order; a spec without sets is one point named 'point'."""
    compiled = compile_all(source)
    resolved = resolve(parse(source), source)
    points = []
    for i, (c, r) in enumerate(zip(compiled, resolved, strict=True)):
        spec = canonical(r.network) + (f"\n{canonical(r.train)}" if r.train is not None else "")
        points.append(Point(i, folder_name(c.point), c.point, spec + "\n", c.total_params, c.family))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ArchlangError(f"two points of the sweep have the same values ({shorten(duplicate)})",
                            path=source.filename, hint="each value of a set must differ from the others")
    return points


def sweep_name(source: Source) -> str:
    """The sweep folder's default name: the spec file's stem, else a hash of the spec text."""
    if source.filename not in ("<inline>", "") and not source.filename.startswith("<"):
        return folder_name((("", Path(source.filename).stem),)).lstrip("=") or "sweep"
    return "sweep-" + hashlib.sha256(source.text.encode()).hexdigest()[:8]


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 1 <= I <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ArchlangError(f"--shard takes I/N with 1 <= I <= N, got '{shorten(text)}'", hint="e.g. --shard 2/4")
    return int(match[1]), int(match[2])


def slurm_shard(env: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """The shard of a SLURM job-array task (`sbatch --array=0-3`), from the variables SLURM sets."""
    task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return None
    try:
        index = int(task) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        total = int(count)
    except ValueError:
        raise ArchlangError(f"SLURM_ARRAY_TASK_ID={shorten(task)}, SLURM_ARRAY_TASK_COUNT={shorten(count)} "
                            "are not numbers", hint="unset them, or give --shard I/N") from None
    if not 0 <= index < total:
        raise ArchlangError(f"SLURM array task {index} (from SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN) "
                            f"is outside 0..{total - 1}", hint="give --shard I/N to choose the points yourself")
    return index + 1, total


def shard(points: list[Point], which: tuple[int, int] | None) -> list[Point]:
    """Shard I of N: every N-th point from the I-th (round robin, so big and small networks mix)."""
    if which is None:
        return points
    i, n = which
    return [p for p in points if p.index % n == i - 1]


def within_budget(points: list[Point], max_params: int | None) -> tuple[list[Point], list[str]]:
    """The points to train and one line for each point skipped for its size."""
    if max_params is None:
        return points, []
    if max_params < 1:
        raise ArchlangError(f"--max-params must be at least 1, got {max_params}")
    keep = [p for p in points if p.params <= max_params]
    lines = [f"skipping {p.name}: {p.params:,} parameters > --max-params {max_params:,}"
             for p in points if p.params > max_params]
    return keep, lines


def is_sweep(source: Source) -> bool:
    """Whether a spec holds sets (IR JSON never does); its errors are left to the compiler."""
    from archlang.schema import looks_like_ir_json
    from archlang.sweep import sweep_size

    if looks_like_ir_json(source.text):
        return False
    return sweep_size(parse(source), source)[0] > 1
