"""Run a list of `archlang train` jobs side by side, resumably, and collect their results.

Each job is one `archlang train` command line (the same a user would type), run as its own
process with one thread: the papers' small nets are dispatch-bound on CPU, so two
single-threaded runs side by side beat one run on two threads. A job whose run folder
exists is resumed from its newest checkpoint; a finished one is skipped. Interrupt at any
time and start the script again, in this session or the next.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from archlang.errors import ArchlangError
from archlang.fileio import atomic_write_text
from archlang.runs import RunFolder, is_done, member_name, parse_member_name

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "reproduce" / "runs"
RESULTS = ROOT / "reproduce" / "results.json"


@dataclass
class Job:
    name: str
    spec: str
    recipe: str
    extra: list[str] = field(default_factory=list)  # further train flags (e.g. --epochs 20)
    # Seeds trained together in one process (`archlang train --seeds`): one run folder per seed,
    # named NAME-seedS. Empty: one ordinary run named NAME, with the recipe's seed.
    seeds: tuple[int, ...] = ()
    # A sweep file trained in groups (`archlang train SWEEP --grouped`): NAME is its sweep folder, one
    # run folder per point (from its sweep.json); the same command again continues it, never --resume.
    grouped_sweep: bool = False

    @property
    def folder(self) -> Path:
        """The run folder to resume (a group resumes through any of its members); a grouped sweep's folder."""
        if self.grouped_sweep:
            return RUNS / self.name
        return self.folders[0]

    @property
    def folders(self) -> list[Path]:
        if self.grouped_sweep:
            from archlang.runs.sweep import read_manifest

            manifest = read_manifest(RUNS / self.name)
            return [RUNS / self.name / p.name for p in manifest.points] if manifest else []
        if not self.seeds:
            return [RUNS / self.name]
        return [RUNS / member_name(self.name, s) for s in self.seeds]

    @property
    def runs(self) -> list[RunFolder]:
        return [RunFolder(f) for f in self.folders]

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.folder)

    def command(self, data_dir: str) -> str:
        """The command to record: what a user types (shell-quoted) to reproduce this run's numbers."""
        return shlex.join(["archlang", "train", self.spec, "--recipe", self.recipe, *self.seed_flags(),
                           *self.trained_extra(), "--data-dir", data_dir, "--out", "reproduce/runs",
                           "--name", self.name])

    def seed_flags(self) -> list[str]:
        if self.grouped_sweep:
            return ["--grouped"]
        return ["--seeds", ",".join(map(str, self.seeds))] if self.seeds else []

    def trained_extra(self) -> list[str]:
        """The extra flags with --epochs and --subset as the run folder records them.

        A script collecting results may be called with other --epochs or --subset than the
        run was trained with; the recorded command must be the one that made the numbers.
        """
        # A grouped sweep's folder is no run: its points' are, and they all train with the same flags.
        run = next((r for r in self.runs if r.is_run()), None) if self.grouped_sweep else self.run
        if run is None or not run.is_run():
            return list(self.extra)
        flags = list(self.extra)
        if "--epochs" in flags:  # without it the recipe's own epochs made the run
            flags = _with_flag(flags, "--epochs", run.read_recipe()["epochs"])
        return _with_flag(flags, "--subset", run.read_info().subset)

    def status(self) -> str:
        """finished, or diverged, when every member is done (archlang.runs.is_done: a diverged copy is an
        outcome, training it again repeats it); new when none has started; else the members' one status,
        or stopped."""
        statuses = {r.status() for r in self.runs} or {"new"}
        if all(is_done(s) for s in statuses):
            return "finished" if statuses == {"finished"} else "diverged"
        if len(statuses) == 1:
            return statuses.pop()
        return "stopped"

    def check_members(self) -> None:
        """Refuse seeds that would change a group already trained: its folders resume as that group.

        `--seeds 1 2 3 4 5` beside a finished group of 1-4 would resume through seed 1 and train
        nothing; seeds none of whose folders exist form a new group, which is fine.
        """
        for seed, run in zip(self.seeds, self.runs):
            if not run.is_run():
                continue
            group = run.read_group()
            trained = tuple(group["seeds"]) if group else (seed,)
            if trained != self.seeds:
                raise SystemExit(f"{self.name}: seeds {_listed(self.seeds)} asked for, but {run.path.name} was trained "
                                 f"with seeds {_listed(trained)} in one process; ask for exactly those seeds, or for "
                                 "seeds of which none has a run folder yet (a new group)")


def _listed(seeds: tuple[int, ...]) -> str:
    return ",".join(map(str, seeds))


def seed_folders(name: str) -> dict[int, RunFolder]:
    """The run folders NAME-seedS that exist (the names `archlang train --seeds --name NAME` gives), by seed."""
    where = RUNS / name
    found = {}
    if where.parent.is_dir():
        for path in where.parent.iterdir():
            member = parse_member_name(path.name)
            if member is not None and member[0] == where.name and RunFolder(path).is_run():
                found[member[1]] = RunFolder(path)
    return dict(sorted(found.items()))


def collected(jobs: list[Job]) -> list[Job]:
    """The jobs to collect results from: each seed group's job replaced by one per group trained under its
    name, whatever its seeds (those asked for this time or others), so no finished run is left out."""
    out: list[Job] = []
    for job in jobs:
        if not job.seeds:
            trained = [job]
        else:
            groups = {tuple((r.read_group() or {"seeds": [s]})["seeds"]) for s, r in seed_folders(job.name).items()}
            trained = [replace(job, seeds=g) for g in sorted(groups)]
        out += [j for j in trained if j not in out]
    return out


def shortened_name(name: str, epochs: int | None, subset: int | None, full_epochs: int | None = None) -> str:
    """A shortened run (a smoke test: --epochs other than full_epochs, or a subset) is named NAME-eE-nN, so it
    never resumes or blocks the real one; with full_epochs None the recipe's own epochs make the full run."""
    short = epochs is not None and epochs != full_epochs
    return name + (f"-e{epochs}" if short else "") + (f"-n{subset}" if subset else "")


def per_seed(name: str, spec: str, recipe: str, seeds: tuple[int, ...], flags: list[str], *, epochs: int | None = None,
             subset: int | None = None, full_epochs: int | None = None) -> list[Job]:
    """One single-seed run (a process) per seed, shortened_name(NAME)-seedS, trained with FLAGS, --epochs,
    --subset, --seed S."""
    name = shortened_name(name, epochs, subset, full_epochs)
    flags = [*flags, *(["--epochs", str(epochs)] if epochs is not None else []),
             *(["--subset", str(subset)] if subset else [])]
    return [Job(member_name(name, s), spec, recipe, [*flags, "--seed", str(s)]) for s in seeds]


def _with_flag(flags: list[str], flag: str, value: object) -> list[str]:
    """flags with `flag value` set (in place if present, else appended), or removed when value is None."""
    out = list(flags)
    if flag in out:
        i = out.index(flag)
        del out[i:i + 2]
        if value is not None:
            out[i:i] = [flag, str(value)]
    elif value is not None:
        out += [flag, str(value)]
    return out


def _argv(job: Job, data_dir: str, threads: int, time_limit: float | None) -> list[str]:
    resuming = not job.grouped_sweep and job.status() != "new"
    where = (["--resume", str(job.folder)] if resuming
             else [*job.seed_flags(), "--out", str(RUNS), "--name", job.name])
    # How long this invocation may train is not part of the run: it stays out of job.command.
    how = ["--threads", str(threads), "--no-progress", *(["--time-limit", f"{time_limit:.2f}"] if time_limit else [])]
    return [sys.executable, "-m", "archlang", "train", job.spec, "--recipe", job.recipe, *job.extra,
            "--data-dir", data_dir, *where, *how]


def run_all(jobs: list[Job], data_dir: str, parallel: int, threads: int, time_limit: float | None = None) -> float:
    """Run every unfinished job, `parallel` at a time; return the wall time in seconds.

    time_limit (minutes): every run checkpoints and stops by then; run the script again to continue.
    """
    for job in jobs:
        job.check_members()  # before anything starts
    RUNS.mkdir(parents=True, exist_ok=True)
    pending = [j for j in jobs if not is_done(j.status())]
    running: list[tuple[Job, subprocess.Popen, object]] = []
    start = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MALLOC_MMAP_MAX_": "0",
           "MALLOC_TRIM_THRESHOLD_": "68719476736"}
    while pending or running:
        while pending and len(running) < parallel:
            left = None if time_limit is None else time_limit - (time.monotonic() - start) / 60.0
            if left is not None and left < 1.0:
                pending.clear()  # too little time to be worth a start: the next invocation runs them
                break
            job = pending.pop(0)
            job.folder.parent.mkdir(parents=True, exist_ok=True)
            log = open(RUNS / f"{job.name}{'-seeds' if job.seeds else ''}.log", "a")  # noqa: SIM115 (open for the run's lifetime, closed below)
            argv = _argv(job, data_dir, threads, left)
            print(f"[{time.strftime('%H:%M:%S')}] start {job.name}: {shlex.join(argv[2:])}", flush=True)
            running.append((job, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), log))
        time.sleep(2)
        for entry in running[:]:
            job, proc, log = entry
            if proc.poll() is not None:
                log.close()  # type: ignore[attr-defined]
                running.remove(entry)
                print(f"[{time.strftime('%H:%M:%S')}] {job.name}: exit {proc.returncode}, {job.status()}", flush=True)
    return time.monotonic() - start


@dataclass(frozen=True)
class SpecFile:
    """A spec file a script writes once and commits (`source`: what makes its text). Naming one writes
    nothing: `check` refuses a file that differs, since the runs in its folders were trained from it, and
    only training `write`s a missing one, so collecting and reading commands leave the tree alone."""

    path: Path
    text: str
    source: str

    def check(self) -> Path:
        if self.path.is_file() and self.path.read_text() != self.text:
            raise SystemExit(f"{self.path} differs from what {self.source} gives; restore it with git (its runs were "
                             "trained from it)")
        return self.path

    def write(self) -> Path:
        if not self.check().is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, self.text, what="spec file")
        return self.path


def committed_spec(path: Path, text: str, source: str) -> Path:
    """SpecFile(path, text, source).write(): written if missing, refused if it differs."""
    return SpecFile(path, text, source).write()


def summary(job: Job) -> dict | None:
    found = job.run.read_summary()
    return found.as_dict() if found else None


def merge_results(entries: list[dict], replace_prefix: tuple[str, str]) -> None:
    """Replace this script's entries (matched by paper and table) in results.json, keep the others.

    No rows never replace a table's rows: a collection that found nothing (other flags than the runs were
    trained with, runs elsewhere) is refused with exit 2, not turned into an erased table."""
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    kept = [e for e in existing if (e["paper"], e["table"]) != replace_prefix]
    if not entries and len(kept) < len(existing):
        print(f"error: no {replace_prefix[1]} rows were collected, so its {len(existing) - len(kept)} rows in "
              f"{RESULTS} are kept; check that the flags are those the runs were trained with", file=sys.stderr)
        raise SystemExit(2)
    atomic_write_text(RESULTS, json.dumps(kept + entries, indent=2) + "\n", what="results.json")


def not_done(jobs: list[Job], args: argparse.Namespace, done: tuple[str, ...] = ("finished",)) -> int | None:
    """None when every job's status is in `done`; else one line naming the others, and the exit code: 0 when
    all of them stopped at this invocation's --time-limit (the same command continues them), else 2."""
    waiting = [(j.name, j.status()) for j in jobs if j.status() not in done]
    if not waiting:
        return None
    stopped = all(s == "stopped" for _, s in waiting) and bool(args.time_limit) and not args.collect_only
    print("; ".join(f"{name} is {status}" for name, status in waiting)
          + (": run this script again to continue" if stopped else ""), file=sys.stderr)
    return 0 if stopped else 2


def analysed_and_merged(analyse: Callable[[], list[dict]], table: tuple[str, str]) -> int:
    """Run an analysis of finished runs and merge its rows (none: a smoke test) as table's; a user's error
    in it (a missing dataset, a damaged run) is its one message and exit 2."""
    try:
        entries = analyse()
    except ArchlangError as err:
        print(err.render(), file=sys.stderr)
        return 2
    if entries:
        merge_results(entries, table)
        print(f"{len(entries)} results merged into {RESULTS}")
    return 0


def positive_int(text: str) -> int:
    """An argparse type: 0 side-by-side runs would wait forever, 0 threads is no run."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="where the dataset is")
    p.add_argument("--parallel", type=positive_int, default=2, help="runs side by side (default 2: one per core)")
    p.add_argument("--threads", type=positive_int, default=1, help="threads per run")
    p.add_argument("--collect-only", action="store_true", help="only gather finished runs into results.json")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="checkpoint and stop every run after this long (run the script again to continue)")
    return p


def run_unless_collecting(jobs: list[Job], args: argparse.Namespace) -> float | None:
    """Run (or resume) the jobs as the common flags say; None with --collect-only."""
    if args.collect_only:
        return None
    return run_all(jobs, args.data_dir, args.parallel, args.threads, args.time_limit)


def plot_loss_panels(panels: dict[str, list[tuple[str, Job]]], path: Path, ylabel: str) -> None:
    """One panel per title, one training-loss curve per (label, job), log scale: the papers' loss figures."""
    from archlang.plotting import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), sharey=True, squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for label, job in curves:
            h = job.run.read_metrics()
            if h:
                ax.semilogy([r.epoch for r in h], [r.train_loss for r in h], label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
