"""The shipped paper networks by name: `archlang list`, and `wrn-28-10` wherever a spec file goes.

The specs are package data under archlang/specs/<group>/<name>.arch, read through importlib.resources
(so they load from a wheel or a zip); specs/catalog.yaml says which paper and table each reproduces.
Like timm's list_models/create_model: a name is resolved here, in one place, for every command.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import yaml

from archlang.errors import ArchlangError, Source, did_you_mean

SPEC_DIR = resources.files("archlang") / "specs"
# Spec files are reported under their path inside the package, which is also their path in the repository.
_SHOWN_PREFIX = "archlang/specs"
# What a catalogue name can look like: the stem of a spec file, optionally with its group ("wrn/wrn-28-10").
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*(/[A-Za-z][A-Za-z0-9_.-]*)?")


@dataclass(frozen=True)
class Entry:
    """One shipped spec: its name, where it lives, and what it reproduces."""

    name: str
    group: str
    paper: str
    paper_title: str
    table: str

    @property
    def path(self) -> str:
        return f"{_SHOWN_PREFIX}/{self.group}/{self.name}.arch"

    def resource(self) -> Traversable:
        return SPEC_DIR / self.group / f"{self.name}.arch"

    def source(self) -> Source:
        return Source(self.resource().read_text(encoding="utf-8"), self.path)


def _spec_files() -> dict[str, str]:
    """name -> group, for every .arch file shipped under specs/<group>/."""
    found: dict[str, str] = {}
    for group in sorted((d for d in SPEC_DIR.iterdir() if d.is_dir()), key=lambda d: d.name):
        for item in group.iterdir():
            if item.name.endswith(".arch"):
                found[item.name.removesuffix(".arch")] = group.name
    return found


@functools.cache
def entries() -> tuple[Entry, ...]:
    """Every shipped spec, grouped by paper as the catalogue lists them."""
    data = yaml.safe_load((SPEC_DIR / "catalog.yaml").read_text(encoding="utf-8"))
    papers: dict[str, str] = data["papers"]
    groups = _spec_files()
    listed = []
    for name, (paper, table) in data["specs"].items():
        if name in groups:  # an entry whose file is gone is a packaging bug the tests catch, not a user error
            listed.append(Entry(name, groups[name], paper, papers[paper], str(table)))
    unlisted = [Entry(name, group, "", "", "") for name, group in groups.items() if name not in data["specs"]]
    return tuple(listed + unlisted)


def names() -> list[str]:
    return [e.name for e in entries()]


def find(name: str) -> Entry | None:
    """The shipped spec called `name` (or `group/name`), if there is one."""
    stem = name.removesuffix(".arch")
    for entry in entries():
        if stem in (entry.name, f"{entry.group}/{entry.name}"):
            return entry
    return None


def looks_like_name(text: str) -> bool:
    return _NAME.fullmatch(text.removesuffix(".arch")) is not None


def unknown_name(text: str) -> ArchlangError:
    """A spec argument that is neither a file nor a shipped name."""
    close = did_you_mean(text.removesuffix(".arch").rsplit("/", 1)[-1], names())
    hint = (close + " " if close else "") + "`archlang list` shows the shipped specs; or give a path to a " \
        ".arch file, or the spec text itself, e.g. 'wrn(depth=28, k=10)'"
    return ArchlangError("no such spec file or shipped spec", path=text, hint=hint)


def resolve_name(text: str) -> Source | None:
    """The source of the shipped spec named `text`; None when `text` is no name (spec text, a path).

    A name-like word that is not a valid spec identifier (`wrn-28-11`, `wrn-28-11.arch`) and names no
    shipped spec is refused here with a did-you-mean, rather than parsed as spec text.
    """
    if not looks_like_name(text):
        return None
    entry = find(text)
    if entry is not None:
        return entry.source()
    group = text.split("/", 1)[0] if "/" in text else None
    if group is None and text.isidentifier():
        return None  # `relu`, `wrn`: spec text, whose parser explains what it lacks
    if group is None or group in {e.group for e in entries()}:
        raise unknown_name(text)
    return None


def label(source: Source) -> str | None:
    """How a spec is named in a table: its catalogue name or its file name; None when given inline."""
    for entry in entries():
        if source.filename == entry.path:
            return entry.name
    return None if source.filename == "<inline>" else source.filename


def list_specs(pattern: str | None = None) -> list[dict[str, object]]:
    """The catalogue with each spec's parameter count compiled from its IR (torch-free, under a second).

    `pattern` filters names as timm.list_models does: shell wildcards, `"wrn-28-*"`, `"*gated*"`.
    """
    rows = _rows() if pattern is None else [r for r in _rows() if fnmatch.fnmatchcase(str(r["name"]), pattern)]
    return [dict(row) for row in rows]


@functools.cache
def _rows() -> tuple[dict[str, object], ...]:
    from archlang.compiler import compile_all

    rows: list[dict[str, object]] = []
    for entry in entries():
        counts = [c.summary.params for c in compile_all(entry.source())]
        rows.append({"name": entry.name, "paper": entry.paper, "table": entry.table, "params": counts[0],
                     "networks": len(counts), "file": entry.path, "paper_title": entry.paper_title})
    return tuple(rows)
