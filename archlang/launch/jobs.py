"""Running a sweep's points: each one an ordinary `python -m archlang train POINT` process.

Locally N at a time (--parallel N), or as a SLURM job array through submitit, whose local executor
runs the same jobs as local processes. A done point (finished, or diverged: archlang.runs.is_done)
is skipped; any other started point is continued with --resume, so the same command run again
picks up where the sweep stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from archlang.errors import ArchlangError
from archlang.launch.points import Point
from archlang.runs import is_done

LAUNCHERS = ("local", "submitit", "submitit-local")
# The SLURM job's own limit, less this, becomes the run's --time-limit: it checkpoints before the kill.
SLURM_MARGIN_MINUTES = 5.0


@dataclass(frozen=True)
class Job:
    """One point to train: the argv after `python -m archlang`, and where its output goes."""

    point: Point
    folder: Path
    argv: tuple[str, ...]
    log: Path | None  # None: the parent's stdout and stderr

    @property
    def resuming(self) -> bool:
        return "--resume" in self.argv


def run_status(folder: Path) -> str:
    """new (no run yet), running (started, not ended), or how the run ended (summary.json)."""
    from archlang.runs import RunFolder

    return RunFolder(folder).status()


def plan_jobs(points: Sequence[Point], root: Path, flags: Sequence[str], logs: bool) -> tuple[list[Job], list[str]]:
    """The jobs of the points not yet done (archlang.runs.is_done), and a line for each done one."""
    jobs, done = [], []
    for p in points:
        folder = root / p.name
        status = run_status(folder)
        if is_done(status):
            done.append(f"{p.name}: {status}, skipped")
            continue
        where = ["--resume", str(folder)] if status != "new" else ["--out", str(root), "--name", p.name]
        log = root / "logs" / f"{p.name}.log" if logs else None
        jobs.append(Job(p, folder, ("train", p.spec, *where, *flags), log))
    return jobs, done


def run_job(argv: Sequence[str], log: str | None) -> int:
    """One point, in a process of its own (a job's body under submitit too: so it must stay importable)."""
    command = [sys.executable, "-m", "archlang", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY_")}  # one point, not a shard
    if log is None:
        return subprocess.run(command, env=env, check=False).returncode
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def _report(job: Job, code: int, seconds: float) -> str:
    status = run_status(job.folder)
    tail = f"; see {job.log}" if job.log is not None and status != "finished" else ""
    return f"{job.point.name}: {status} (exit {code}, {seconds:.1f} s){tail}"


def run_local(jobs: Sequence[Job], parallel: int) -> list[int]:
    """Every job, `parallel` at a time; a line as each one ends."""
    def one(job: Job) -> int:
        start = time.monotonic()
        print(f"{job.point.name}: {'resuming' if job.resuming else 'training'}", file=sys.stderr, flush=True)
        code = run_job(job.argv, str(job.log) if job.log else None)
        print(_report(job, code, time.monotonic() - start), file=sys.stderr, flush=True)
        return code

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, jobs))


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int | None = None
    job_minutes: float | None = None
    parallel: int | None = None  # how many array tasks run at once (the array's %N)


def _executor(folder: Path, local: bool, opts: SlurmOptions):
    try:
        import submitit
    except ModuleNotFoundError:
        raise ArchlangError("--launcher submitit needs submitit, which is not installed",
                            hint="pip install 'archlang[cluster]'") from None
    if local:
        executor = submitit.AutoExecutor(folder=folder, cluster="local")
    else:
        if shutil.which("sbatch") is None:
            raise ArchlangError("--launcher submitit submits to SLURM, but this machine has no sbatch",
                                hint="run it on a SLURM login node; --launcher submitit-local runs the same "
                                "jobs as local processes")
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, object] = {"name": "archlang-sweep"}
    if opts.job_minutes is not None:
        params["timeout_min"] = int(opts.job_minutes)
    if opts.gpus_per_job is not None:
        params["gpus_per_node"] = opts.gpus_per_job
    if opts.partition is not None:
        params["slurm_partition"] = opts.partition
    if opts.parallel is not None:
        params["slurm_array_parallelism"] = opts.parallel
    executor.update_parameters(**params)
    return executor


def run_submitit(jobs: Sequence[Job], folder: Path, local: bool, opts: SlurmOptions) -> list[int]:
    """The jobs as one job array; waits for them and reports each (their logs: submitit's folder)."""
    if not jobs:
        return []
    executor = _executor(folder, local, opts)
    from submitit.core.utils import FailedJobError, UncompletedJobError
    submitted = executor.map_array(run_job, [list(j.argv) for j in jobs], [str(j.log) for j in jobs])
    print(f"submitted {len(submitted)} jobs ({submitted[0].job_id.split('_')[0]}...); logs in {folder}",
          file=sys.stderr, flush=True)
    codes = []
    for job, handle in zip(jobs, submitted, strict=True):
        start = time.monotonic()
        try:
            code = int(handle.result())
        except (FailedJobError, UncompletedJobError) as exc:  # killed or failed outside archlang: submitit says why
            print(f"{job.point.name}: job {handle.job_id} failed: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
            code = 1
        print(_report(job, code, time.monotonic() - start), file=sys.stderr, flush=True)
        codes.append(code)
    return codes
