"""`archlang train SWEEP`: the sweep flags of `archlang train`, and training every point of a sweep.

Torch-free: the parent process only plans; each point trains in a process of its own, started
with the same training flags the sweep was given (so a rerun resumes each point with equal flags).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from archlang.errors import ArchlangError, Source, shorten
from archlang.launch import groups, jobs
from archlang.launch.points import Point, parse_shard, shard, slurm_shard, sweep_name, sweep_points, within_budget
from archlang.runs import is_done
from archlang.runs.sweep import manifest_of, write_manifest

# Flags the sweep consumes itself (or sets per point) and never passes on to a point's process.
SWEEP_DESTS = {"spec", "out", "name", "resume", "threads", "parallel", "shard", "launcher", "partition",
               "gpus_per_job", "job_minutes", "max_params", "handler", "train_parser", "command", "grouped",
               "sweep_group", "points"}


def add_sweep_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sweeps", "a spec with {a, b} sets trains every point: runs/<sweep>/<values>/ "
                             "and runs/<sweep>/sweep.json; the same command again skips finished points "
                             "and resumes the others")
    g.add_argument("--parallel", type=int, default=1, metavar="N", help="train N points at once on this machine "
                   "(each gets cores/N threads unless --threads is given)")
    g.add_argument("--shard", metavar="I/N", help="train only shard I of N (every N-th point from the I-th); "
                   "default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when set")
    g.add_argument("--launcher", choices=jobs.LAUNCHERS, default="local", help="local: processes on this machine "
                   "(default); submitit: a SLURM job array; submitit-local: submitit's local executor")
    g.add_argument("--partition", help="SLURM partition of the job array (--launcher submitit)")
    g.add_argument("--gpus-per-job", type=int, metavar="N", help="GPUs of each SLURM job (--launcher submitit)")
    g.add_argument("--job-minutes", type=float, metavar="MINUTES", help="time limit of each SLURM job; the run "
                   f"checkpoints and stops {jobs.SLURM_MARGIN_MINUTES:g} minutes before it unless --time-limit is given")
    g.add_argument("--grouped", action="store_true", help="train the points that share one architecture (they may "
                   "differ in recipe fields such as lr, momentum, schedule, weight decay, seed, and in initial values "
                   "such as a highway bias_init or a gate's k_init) together in ONE process each; one run folder per "
                   "point as without it. Points that differ in anything else (shapes, activation, epochs, batch size, "
                   "optimizer kind, batch-norm settings) form groups of their own")
    g.add_argument("--max-params", type=int, metavar="N", help="skip points with more than N parameters (counted "
                   "from the IR, before training)")
    p.set_defaults(train_parser=p)


def _flag_words(action: argparse.Action, value: object) -> list[str]:
    """The command-line words that give `value` to `action` again (the inverse of argparse)."""
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else f"--no-{flag[2:]}"]
    if isinstance(action, argparse._StoreTrueAction):
        return [flag] if value else []
    if isinstance(action, argparse._AppendAction):  # --set FIELD=VALUE: JSON is YAML, so it parses back alike
        return [w for key, v in value for w in (flag, f"{key}={json.dumps(v)}")]  # type: ignore[attr-defined]
    return [flag, str(value)]


def forwarded_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The training flags given (those that differ from their defaults), as words for a point's process."""
    words: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.dest in SWEEP_DESTS or action.dest == "help":
            continue
        value = getattr(args, action.dest, action.default)
        if value != action.default and value is not None:
            words += _flag_words(action, value)
    return words


def _threads(args: argparse.Namespace) -> int | None:
    if args.threads is not None or args.parallel <= 1:
        return args.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // args.parallel)


def _point_flags(args: argparse.Namespace) -> list[str]:
    flags = forwarded_flags(args.train_parser, args)
    threads = _threads(args)
    if threads is not None:
        flags += ["--threads", str(threads)]
    if args.launcher == "submitit" and args.job_minutes and args.time_limit is None:
        flags += ["--time-limit", f"{max(1.0, args.job_minutes - jobs.SLURM_MARGIN_MINUTES):g}"]
    return flags


def check_sweep_flags(args: argparse.Namespace) -> None:
    if args.parallel < 1:
        raise ArchlangError(f"--parallel must be at least 1, got {args.parallel}")
    if args.resume is not None:
        raise ArchlangError("--resume continues one run; a sweep continues by running the same command again",
                            hint="drop --resume: finished points are skipped and the others resumed")
    if args.gpus_per_job is not None and args.gpus_per_job < 0:
        raise ArchlangError(f"--gpus-per-job must be at least 0, got {args.gpus_per_job}")
    if args.job_minutes is not None and not args.job_minutes > 0:
        raise ArchlangError(f"--job-minutes must be a positive number, got {args.job_minutes:g}")


def run_sweep(args: argparse.Namespace, source: Source) -> int:
    """Train the points of this machine's shard; 0 when every one of them is finished."""
    check_sweep_flags(args)
    points = sweep_points(source)
    root = Path(args.out) / (args.name or sweep_name(source))
    root.mkdir(parents=True, exist_ok=True)
    write_manifest(root, manifest_of(source.text, [p.as_dict() for p in points]))
    which = parse_shard(args.shard) if args.shard else slurm_shard()
    if args.grouped:
        todo, mine = _grouped_jobs(args, source, points, root, which)
    else:
        todo, mine = _point_jobs(args, points, root, which)
    if args.launcher == "local" and args.grouped:
        codes = groups.run_local(todo, args.parallel, args.time_limit)
    elif args.launcher == "local":
        codes = jobs.run_local(todo, args.parallel)
    else:
        options = jobs.SlurmOptions(args.partition, args.gpus_per_job, args.job_minutes,
                                    args.parallel if args.parallel > 1 else None)
        codes = jobs.run_submitit(todo, root / "submitit", args.launcher == "submitit-local", options)
    unfinished = [p.name for p in mine if not is_done(jobs.run_status(root / p.name))]
    if unfinished:
        print(f"{len(unfinished)} of {len(mine)} points not finished; run the same command again to continue them",
              file=sys.stderr)
    diverged = [p.name for p in mine if jobs.run_status(root / p.name) == "diverged"]
    if diverged:
        print(f"{len(diverged)} of {len(mine)} points diverged (their summary.json says so)", file=sys.stderr)
    print(root)
    if not unfinished:
        return 0  # every point ran to its end; a diverged one is an outcome of its settings
    return next((c for c in codes if c == 130), 2 if 2 in codes else (1 if unfinished else 0))


def _logs(args: argparse.Namespace) -> bool:
    return args.parallel > 1 or args.launcher != "local"


def _point_jobs(args: argparse.Namespace, points: list[Point], root: Path,
                which: tuple[int, int] | None) -> tuple[list[jobs.Job], list[Point]]:
    mine, skipped = within_budget(shard(points, which), args.max_params)
    for line in skipped:
        print(line, file=sys.stderr)
    part = f" (shard {which[0]}/{which[1]})" if which else ""
    print(f"sweep {root}: {len(points)} points, {len(mine)} to train here{part}", file=sys.stderr, flush=True)
    todo, done = jobs.plan_jobs(mine, root, _point_flags(args), logs=_logs(args))
    for line in done:
        print(line, file=sys.stderr)
    return todo, mine


def _grouped_jobs(args: argparse.Namespace, source: Source, points: list[Point], root: Path,
                  which: tuple[int, int] | None) -> tuple[list[jobs.Job], list[Point]]:
    """Groups of points, sharded by group; each group one job (archlang.launch.groups)."""
    from archlang.train.command import recipe_overrides

    groups.check_grouped_flags(args)
    kept, skipped = within_budget(points, args.max_params)
    for line in skipped:
        print(line, file=sys.stderr)
    mine = groups.shard_groups(groups.group_points(source, kept, args.recipe, recipe_overrides(args)), which)
    part = f" (shard {which[0]}/{which[1]})" if which else ""
    sizes = ", ".join(str(len(g)) for g in mine)
    print(f"sweep {root}: {len(points)} points; {len(mine)} groups to train here{part} ({sizes} points)",
          file=sys.stderr, flush=True)
    flags = _point_flags(args)
    local = args.launcher == "local"
    todo, done = groups.plan_groups(mine, root, groups.without_time_limit(flags) if local else flags, _logs(args))
    for line in done:
        print(line, file=sys.stderr)
    return todo, [p for g in mine for p in g]


def sweep_or_none(args: argparse.Namespace) -> int | None:
    """The hook of `archlang train`: a sweep's exit status, or None for one network (trained as before)."""
    from archlang.launch.points import is_sweep
    from archlang.parser import read_source

    if args.spec is None:
        return None
    source = read_source(args.spec)
    if is_sweep(source):
        return run_sweep(args, source)
    if args.max_params is not None:
        from archlang.compiler import compile_spec

        params = compile_spec(source).total_params
        if params > args.max_params:
            print(f"skipping {shorten(args.spec, 60)}: {params:,} parameters > --max-params {args.max_params:,}", file=sys.stderr)
            return 0
    return None
