"""Carry unfinished reproduction runs to the next machine, through git.

Checkpoints are not committed (.gitignore): a finished run needs none. But a session's machine is not
always the next session's, and a long job stopped by `--time-limit` then restarts from scratch on the
new one (session 9 found a 6-copy group that had reached epoch 89 of 100 gone that way). Before the
last commit of a session, this stages (`git add -f`) the newest checkpoint that verifies of every
unfinished run under reproduce/runs, the one file its resume needs, and unstages the checkpoints it
parked earlier that no run needs any more (the run finished, or trained past them). The next session
runs the same reproduce command on a fresh clone and goes on from there.

    python reproduce/park.py           # what it would stage and unstage, with sizes
    python reproduce/park.py --stage   # do it; then commit
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jobs import ROOT, RUNS

from archlang.runs import RunFolder, is_done
from archlang.runs.checkpoint import CHECKPOINT_RE, GROUPED_RE, newest_good_file


@dataclass
class Plan:
    park: list[Path]  # newest good checkpoint of each unfinished run
    release: list[Path]  # tracked checkpoints no unfinished run needs
    tracked: set[Path]  # what git tracks already (resolved)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: git {' '.join(args[:2])} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def tracked_checkpoints(repo: Path, runs: Path) -> list[Path]:
    """Checkpoint files under `runs` that git tracks (parked by an earlier session), existing or not."""
    names = _git(repo, "ls-files", "-z", "--", str(runs)).split("\0")
    return [repo / n for n in names if n and (CHECKPOINT_RE.match(Path(n).name) or GROUPED_RE.match(Path(n).name))]


def unfinished_runs(runs: Path) -> list[RunFolder]:
    """Run folders under `runs` that started and did not end, with a checkpoint folder."""
    found = []
    for folder in sorted(p.parent for p in runs.rglob(RunFolder.CHECKPOINTS) if p.is_dir()):
        run = RunFolder(folder)
        if run.is_run() and not is_done(run.status()):
            found.append(run)
    return found


def plan(repo: Path, runs: Path) -> Plan:
    park = [p for p in (newest_good_file(run.checkpoints) for run in unfinished_runs(runs)) if p is not None]
    keep, tracked = {p.resolve() for p in park}, tracked_checkpoints(repo, runs)
    return Plan(park, [p for p in tracked if p.resolve() not in keep], {p.resolve() for p in tracked})


def stage(repo: Path, todo: Plan) -> None:
    if todo.release:
        _git(repo, "rm", "--cached", "--quiet", "--ignore-unmatch", "--", *map(str, todo.release))
    if todo.park:
        _git(repo, "add", "-f", "--", *map(str, todo.park))


def describe(repo: Path, todo: Plan) -> list[str]:
    lines = [f"park {p.relative_to(repo)} ({p.stat().st_size / 1e6:.1f} MB"
             f"{', in git already' if p.resolve() in todo.tracked else ''})" for p in todo.park]
    lines += [f"release {p.relative_to(repo)}" for p in todo.release]
    total = sum(p.stat().st_size for p in todo.park) / 1e6
    return lines + [f"{len(todo.park)} checkpoints to park, {total:.1f} MB; {len(todo.release)} to release"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", action="store_true", help="git add -f / git rm --cached as listed (no commit)")
    args = p.parse_args(argv)
    todo = plan(ROOT, RUNS)
    print("\n".join(describe(ROOT, todo)))
    if args.stage:
        stage(ROOT, todo)


if __name__ == "__main__":
    main()
