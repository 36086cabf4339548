"""sweep.json: the list of a sweep's points, beside their run folders (runs/<sweep>/<point>/).

runs/<sweep>/
  sweep.json     the points: name, varying values, concrete spec, parameters, family
  <point>/       one ordinary run folder per point (archlang.runs.folder)
  logs/          each point's output when points train side by side
  submitit/      submitit's job files, with --launcher submitit

The manifest holds only what the spec decides (the points, their specs and parameter counts), never
progress: every shard of a sweep, on any machine, writes the same bytes, so shards racing to write
it cannot disagree, and how far each point got is read from its own run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from archlang.errors import ArchlangError, shorten
from archlang.fileio import atomic_write_text
from archlang.runs.folder import validation_message

MANIFEST = "sweep.json"
FORMAT = 1
MAX_MANIFEST = 64 << 20  # 10,000 points of a few hundred bytes each, with room


class PointRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    index: NonNegativeInt
    name: str = Field(min_length=1, max_length=255)
    values: dict[str, str]
    spec: str
    params: NonNegativeInt
    family: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    archlang_sweep: int = FORMAT
    spec: str  # the sweep's spec text as given
    points: list[PointRecord]

    @property
    def varying(self) -> list[str]:
        """The names of the sweep's sets, in the order of a point's folder name."""
        return list(self.points[0].values) if self.points else []


def manifest_of(spec_text: str, points: list[dict[str, Any]]) -> Manifest:
    return Manifest(spec=spec_text, points=[PointRecord.model_validate(p) for p in points])


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of a sweep folder; None when the folder holds none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST + 1)
        if len(data) > MAX_MANIFEST:
            raise ArchlangError(f"{MANIFEST} is over {MAX_MANIFEST >> 20} MiB: not a file archlang wrote", path=str(path))
        return Manifest.model_validate(json.loads(data.decode("utf-8")))
    except (OSError, ValueError, RecursionError) as exc:
        reason = validation_message(exc) if isinstance(exc, ValidationError) else shorten(str(exc), 160)
        raise ArchlangError(f"{MANIFEST} is damaged ({reason})", path=str(path),
                            hint="delete it: the next `archlang train SWEEP` writes it again") from None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write sweep.json, refusing to put one sweep's points beside another's."""
    old = read_manifest(folder)
    if old is not None and [p.name for p in old.points] != [p.name for p in manifest.points]:
        raise ArchlangError("this folder holds another sweep (its points differ)", path=str(folder),
                            hint="give the sweep another --name, or another --out")
    if old is not None and old.points != manifest.points:
        raise ArchlangError("this folder holds a sweep with the same point names but other networks or recipes",
                            path=str(folder), hint="give the sweep another --name, or another --out")
    data: dict[str, Any] = manifest.model_dump()
    atomic_write_text(folder / MANIFEST, json.dumps(data, indent=2) + "\n", what=MANIFEST)
