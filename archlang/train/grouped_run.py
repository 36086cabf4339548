"""Several runs of one architecture trained together in ONE process (archlang.train.grouped_trainer).

- `archlang train SPEC --seeds N`: one copy of the spec per seed (train_grouped);
- `archlang train SWEEP --grouped`: the points of one group of a sweep (train_sweep_group), copies that
  differ in recipe fields and initial values (archlang.train.grouping, archlang.ir.structure).

Every copy is an ordinary run folder; each one's run.json names the group ({"seeds", "folders"}),
so `--resume` of any member's folder continues the whole group, each copy with its own saved spec
and recipe. The analyses read a stopped copy from the group's grouped checkpoint (archlang.runs.load).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlang.compiler import Compiled, compile_spec
from archlang.errors import ArchlangError, Source, shorten
from archlang.grouped import check_supported
from archlang.runs import RunFolder, member_name
from archlang.runs.sweep import read_manifest
from archlang.train import ddp
from archlang.train.grouped_trainer import GroupedTrainer, build_group, copy_hyper
from archlang.train.grouping import check_groupable
from archlang.train.options import TrainOptions
from archlang.train.plan import RunPlan, plan_run, resolve_recipe

__all__ = ["MAX_COPIES", "build_group", "copy_hyper", "group_of", "parse_seeds", "train_grouped", "train_sweep_group"]

MAX_COPIES = 256  # far beyond what fits a step; a typo like --seeds 10000 is refused, not attempted


def parse_seeds(text: str) -> list[int]:
    """`N` means seeds 0..N-1; a comma-separated list (`3,5,8`, or `7,` for one) names them."""
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ArchlangError(f"--seeds takes a count N or a list like 3,5,8, not {shorten(text, 40)!r}") from None
    if not seeds or len(seeds) > MAX_COPIES or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ArchlangError(f"--seeds needs 1 to {MAX_COPIES} distinct non-negative seeds, got {shorten(text, 40)!r}")
    return seeds


def group_of(folder: str | Path) -> dict[str, Any] | None:
    """The `group` record of a copy's run.json ({"seeds": [...], "folders": [...]}), None for a single run."""
    return RunFolder.open(folder).read_group()


@dataclass(frozen=True)
class Member:
    """One copy to plan: its network and spec text, recipe overrides, and new name or folder to resume."""

    compiled: Compiled
    spec_text: str | None
    overrides: dict[str, Any]
    name: str | None = None
    folder: Path | None = None


def _check_call(compiled: Compiled, opts: TrainOptions, flag: str) -> None:
    check_supported(compiled.network, compiled.source)  # before any folder exists
    if ddp.context_from_env().enabled:
        raise ArchlangError(f"{flag} trains its copies in one process, not under torchrun")
    unsupported = [f for f, on in (("--bf16", opts.bf16), ("--channels-last", opts.channels_last)) if on]
    if unsupported:
        raise ArchlangError(f"{flag} does not take {', '.join(unsupported)} (grouped runs are fp32 and contiguous)")


def _resumed_members(compiled: Compiled, spec_text: str | None, overrides: dict[str, Any],
                     resume: str | Path) -> list[Member]:
    """The group of `resume`: the named folder with the given spec, every other one with its own."""
    group = group_of(resume)
    if group is None:
        raise ArchlangError("not a grouped run (its run.json names no group)", path=str(resume),
                            hint="resume it without --seeds")
    members = []
    for seed, name in zip(group["seeds"], group["folders"]):
        folder = Path(resume).parent / name
        own, text = compiled, spec_text
        if folder.resolve() != Path(resume).resolve():
            text, filename = RunFolder.open(folder).read_spec()
            own = compile_spec(Source(text, filename))
        members.append(Member(own, text, {**overrides, "seed": seed}, folder=folder))
    return members


def _train_members(members: Sequence[Member], recipe: str | None, out: str | Path, data_dir: str | Path | None,
                   subset: int | None, opts: TrainOptions) -> list[Path]:
    recipes = [recipe if recipe is not None or m.folder is None else str(RunFolder(m.folder).recipe_path)
               for m in members]
    # What a group cannot train is refused before any run folder is made or data read.
    check_groupable([resolve_recipe(m.compiled, r, m.overrides).recipe for m, r in zip(members, recipes)],
                  [m.name or (m.folder.name if m.folder else f"copy {i}") for i, m in enumerate(members)])
    plans: list[RunPlan] = []
    try:
        for m, own_recipe in zip(members, recipes):
            plans.append(plan_run(m.compiled, ddp.SINGLE, opts, recipe=own_recipe, overrides=m.overrides, out=out,
                                  name=m.name, resume=m.folder, data_dir=data_dir, subset=subset,
                                  spec_text=m.spec_text))
        return GroupedTrainer([m.compiled for m in members], plans, opts).train()
    finally:
        for plan in plans:
            plan.run.release()


def train_grouped(compiled: Compiled, seeds: list[int] | None, *, recipe: str | None = None,
                  overrides: Mapping[str, Any] | None = None, out: str | Path = "runs", name: str | None = None,
                  resume: str | Path | None = None, data_dir: str | Path | None = None, subset: int | None = None,
                  options: TrainOptions | None = None, spec_text: str | None = None) -> list[Path]:
    """Train one copy per seed (or continue the group of the run folder `resume`); the copies' run folders."""
    opts = options or TrainOptions()
    _check_call(compiled, opts, "--seeds")
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ArchlangError("--seeds sets each copy's seed: drop --seed (or seed=) from the overrides")
    if resume is not None:
        members = _resumed_members(compiled, spec_text, overrides, resume)
    else:
        members = [Member(compiled, spec_text, {**overrides, "seed": s}, member_name(name, s) if name else None)
                   for s in (seeds or [])]
    return _train_members(members, recipe, out, data_dir, subset, opts)


def train_sweep_group(root: str | Path, indices: Sequence[int], *, recipe: str | None = None,
                      overrides: Mapping[str, Any] | None = None, data_dir: str | Path | None = None,
                      subset: int | None = None, options: TrainOptions | None = None) -> list[Path]:
    """Train points `indices` of the sweep in `root` (its sweep.json) as one group: root/<point>/ each.

    Each copy is planned as `archlang train POINT --out root --name <point>` would plan it (the
    same spec text, so the same run identity), and resumes as any grouped run does.
    """
    manifest = read_manifest(Path(root))
    if manifest is None:
        raise ArchlangError("not a sweep folder (no sweep.json)", path=str(root))
    if not indices or len(set(indices)) != len(indices) or not all(0 <= i < len(manifest.points) for i in indices):
        raise ArchlangError(f"--points needs distinct point indices below {len(manifest.points)}, got "
                            f"{shorten(','.join(map(str, indices)))}")
    points = [manifest.points[i] for i in indices]
    members = [Member(compile_spec(Source(p.spec, "<inline>")), p.spec, dict(overrides or {}), p.name)
               for p in points]
    opts = options or TrainOptions()
    _check_call(members[0].compiled, opts, "--grouped")
    return _train_members(members, recipe, root, data_dir, subset, opts)
