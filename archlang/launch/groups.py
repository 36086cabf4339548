"""`archlang train SWEEP --grouped`: a sweep's points trained in groups, each group ONE process.

Points whose networks are one architecture (archlang.ir.structure: equal IR but for initial values
such as a highway bias or a gate's k) and whose recipes agree in every field the copies of a group
share (archlang.train.grouping: epochs, batch size, data, optimizer kind, batch-norm settings, ...)
form a group: `archlang train --sweep-group ROOT --points I,J,K` trains them as the copies of one
grouped model, each in its ordinary folder ROOT/<point>/. A point alone in its group trains as an
ordinary point. Run the same command again to continue: finished groups are skipped (a copy that
diverged is finished too: its run would only diverge again), the others resume. With --time-limit
the whole command stops by then: each group gets what is left of it when it starts.
Torch-free, like the rest of the sweep's parent process.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from archlang.compiler import compile_all
from archlang.errors import ArchlangError, Source
from archlang.ir.structure import structure_key
from archlang.launch import jobs
from archlang.launch.points import Point
from archlang.runs import is_done
from archlang.train.grouping import shared_key
from archlang.train.recipes import build_recipe


def group_points(source: Source, points: Sequence[Point], recipe: str | None,
                 overrides: dict[str, Any]) -> list[list[Point]]:
    """The points as groups that can train together, in the order of their first point."""
    compiled = compile_all(source)
    groups: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        c = compiled[p.index]
        resolved = build_recipe(recipe, family=c.family, family_args=c.family_args, input_shape=tuple(c.input_shape),
                                train_args=c.train_args, train_spans=c.train_spans, spec_source=c.source,
                                overrides=overrides, network=c.spec)
        groups.setdefault((structure_key(c.network), shared_key(resolved.recipe)), []).append(p)
    return list(groups.values())


def shard_groups(groups: list[list[Point]], which: tuple[int, int] | None) -> list[list[Point]]:
    """Shard I of N of the groups (every N-th group from the I-th): a group never spans two machines."""
    if which is None:
        return groups
    i, n = which
    return [g for k, g in enumerate(groups) if k % n == i - 1]


def group_status(root: Path, group: Sequence[Point]) -> str:
    if all(is_done(jobs.run_status(root / p.name)) for p in group):
        return "finished"
    return "new" if jobs.run_status(root / group[0].name) == "new" else "started"


def plan_groups(groups: Sequence[Sequence[Point]], root: Path, flags: Sequence[str],
                logs: bool) -> tuple[list[jobs.Job], list[str]]:
    """One job per unfinished group (a group of one: an ordinary point's job), a line per finished one."""
    todo: list[jobs.Job] = []
    done: list[str] = []
    for group in groups:
        if len(group) == 1:
            one, lines = jobs.plan_jobs(group, root, flags, logs)
            todo += one
            done += lines
            continue
        leader = group[0]
        status = group_status(root, group)
        label = f"{leader.name} and {len(group) - 1} more"
        if status == "finished":
            done.append(f"{label}: finished, skipped")
            continue
        where = (["--sweep-group", str(root), "--points", ",".join(str(p.index) for p in group)]
                 if status == "new" else ["--resume", str(root / leader.name)])
        log = root / "logs" / f"{leader.name}.group.log" if logs else None
        todo.append(jobs.Job(leader, root / leader.name, ("train", *where, *flags), log))
    return todo, done


def without_time_limit(flags: Sequence[str]) -> list[str]:
    out = list(flags)
    if "--time-limit" in out:
        i = out.index("--time-limit")
        del out[i:i + 2]
    return out


def run_local(todo: Sequence[jobs.Job], parallel: int, time_limit: float | None) -> list[int]:
    """Every job, `parallel` at a time; with time_limit (minutes) each gets what is left of it."""
    start = time.monotonic()

    def one(job: jobs.Job) -> int:
        argv = list(job.argv)
        if time_limit is not None:
            left = time_limit - (time.monotonic() - start) / 60.0
            if left < 1.0:
                print(f"{job.point.name}: not started (under a minute of --time-limit left)", file=sys.stderr)
                return 1
            argv += ["--time-limit", f"{left:.2f}"]
        print(f"{job.point.name}: {'resuming' if job.resuming else 'training'} ({' '.join(argv[1:3])})",
              file=sys.stderr, flush=True)
        began = time.monotonic()
        code = jobs.run_job(argv, str(job.log) if job.log else None)
        print(f"{job.point.name}: {jobs.run_status(job.folder)} (exit {code}, {time.monotonic() - began:.1f} s)",
              file=sys.stderr, flush=True)
        return code

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, todo))


def check_grouped_flags(args: argparse.Namespace) -> None:
    if getattr(args, "seeds", None) is not None:
        raise ArchlangError("--grouped trains a sweep's points together; it does not take --seeds",
                            hint="make the seed a set of the sweep: let s = {0, 1, 2} ... train(seed=s)")
