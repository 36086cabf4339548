"""Gated ResNet (later version) Tables 1 and 2: plain, residual and gated FC nets on MNIST, d = 2..100.

    python reproduce/gated_mnist.py            # runs (or resumes) all 15 cells x 5 seeds, two jobs side by side
    python reproduce/gated_mnist.py --collect-only
    python reproduce/gated_mnist.py --project  # ~10 min: 3 epochs of each cell, its wall time from them

Recipe gated-mnist: NAdam lr 0.002, batch 128, 100 epochs, pixels/255 (paper sec. 3.1). Each cell
reports mean, sample std and a 95% t interval over its finished seeds, of the final and of the
best-epoch test error (and mean k); each depth the gated - residual difference paired by seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import jobs as jobs_module
import stats
from jobs import ROOT, Job, collected, merge_results, parser, run_unless_collecting

from archlang.fileio import atomic_write_text
from archlang.runs import RunFolder

PAPER = "Gated ResNet (Savarese et al., later version)"
DEPTHS = (2, 10, 20, 50, 100)
# Table 1 test error (%) and Table 2 mean k, as printed.
TABLE1 = {"plain": (2.29, 2.22, 2.21, 60.37, 90.20), "residual": (2.20, 1.64, 1.61, 1.62, 1.50),
          "gated": (2.17, 1.60, 1.57, 1.48, 1.26)}
TABLE2 = (5.58, 2.54, 1.73, 1.04, 0.67)
BLOCKS = {"plain": "plain", "residual": "residual", "gated": "gated(residual)"}
# What a paired interval of gated - residual says: the paper's claim is gated < residual.
CLAIM = {"below 0": "gated < residual", "above 0": "gated > residual", "inconclusive": "inconclusive"}


KINDS = ("gated", "residual", "plain")
SEEDS = (1, 2, 3, 4)  # beside each cell's seed-0 run (the recipe's seed): five seeds per cell
EPOCHS = 100  # the recipe's
# --project: reproduce/runs/TIMING/ holds its short runs (never results, .gitignore); the first epoch compiles
TIMING, TIMING_EPOCHS = "timing-table1", 3
TIMING_FILE = ROOT / "reproduce" / "timing.json"


def jobs(depths: tuple[int, ...] = DEPTHS, kinds: tuple[str, ...] = KINDS, seeds: tuple[int, ...] = SEEDS) -> list[Job]:
    """Per cell, the seed-0 run and one grouped job training `seeds` together in one process.

    Deepest first, so the longest runs start early and the two workers finish together.
    """
    found = []
    for d in sorted(depths, reverse=True):
        for kind in kinds:
            spec = f"mlp(depth={d}, width=50, block={BLOCKS[kind]})"
            found.append(Job(f"gated-mnist/{kind}-d{d}", spec, "gated-mnist"))
            if seeds:
                found.append(Job(f"gated-mnist/{kind}-d{d}", spec, "gated-mnist", seeds=tuple(seeds)))
    return found


@dataclass
class SeedRun:
    """The numbers of one finished run that the tables and Figure 4 use."""

    final_error: float
    best_error: float  # min over epochs of the test error: how far the epoch-to-epoch noise reaches
    mean_k: float | None
    train_loss: list[float]
    epochs: int


def _finished(run: RunFolder) -> SeedRun | None:
    summary = run.read_summary()
    if (summary is None or summary.status != "finished" or summary.final_test_error is None
            or summary.epochs_done != summary.epochs):  # a truncated run is no cell's value
        return None
    history = run.read_metrics()
    errors = [r.test_error for r in history if r.test_error is not None]
    return SeedRun(summary.final_test_error, min(errors, default=summary.final_test_error), summary.mean_k,
                   [r.train_loss for r in history], summary.epochs_done)


def _seed_of(job: Job, run: RunFolder) -> int:
    """A group member's seed is its job's; a single run trained with its recipe's seed."""
    if job.seeds:
        return job.seeds[job.folders.index(run.path)]
    return int(run.read_recipe()["seed"])


def cell_runs(cell_jobs: list[Job]) -> tuple[dict[int, SeedRun], list[Job]]:
    """The finished runs of one cell by seed, and the jobs that made them (for their commands)."""
    found: dict[int, SeedRun] = {}
    used = []
    for job in cell_jobs:
        for run in job.runs:
            numbers = _finished(run) if run.is_run() else None
            if numbers is not None:
                found[_seed_of(job, run)] = numbers
                if job not in used:
                    used.append(job)
    return found, used


def _cells(all_jobs: list[Job]) -> dict[tuple[str, int], list[Job]]:
    cells: dict[tuple[str, int], list[Job]] = {}
    for job in all_jobs:
        cells.setdefault(_cell_of(job), []).append(job)
    return cells


def _row(base: dict, table: str, metric: str, paper_value: float, by_seed: dict[int, float]) -> dict:
    described = stats.describe(by_seed)
    return {**base, "table": table, "metric": metric, "paper_value": paper_value, "ours": described["mean"],
            **described}


def results(all_jobs: list[Job] | None = None) -> list[dict]:
    """Table 1 and 2 rows over the finished seeds of each cell, and gated - residual per depth, paired by seed.

    A cell reports as soon as one seed has finished; `n` says how many made its numbers. By default
    every group trained under a cell's name counts, whatever seeds it was started with.
    """
    cells = _cells(all_jobs if all_jobs is not None else collected(jobs()))
    found = {cell: cell_runs(cell_jobs) for cell, cell_jobs in cells.items()}
    entries = []
    for d in DEPTHS:
        for kind in KINDS:
            runs, used = found.get((kind, d), ({}, []))
            if not runs:
                continue
            i = DEPTHS.index(d)
            done = sorted({r.epochs for r in runs.values()})
            epochs = done[0] if len(done) == 1 else "/".join(map(str, done))
            scale = (f"full scale: all 60,000 MNIST training images, {epochs} epochs, {len(runs)} "
                     f"seed{'s' if len(runs) > 1 else ''} (paper: 1 run)")
            base = {"paper": PAPER, "spec": used[0].spec, "epochs": epochs, "scale": scale,
                    "command": "; ".join(job.command("../shared/data") for job in used)}
            row = _row(base, "Table 1", f"test error (%), {kind}, d={d}", TABLE1[kind][i],
                       {s: r.final_error for s, r in runs.items()})
            row["best_epoch"] = stats.describe({s: r.best_error for s, r in runs.items()})
            entries.append(row)
            if kind == "gated" and any(r.mean_k is not None for r in runs.values()):
                entries.append(_row(base, "Table 2", f"mean k, d={d}", TABLE2[i],
                                    {s: r.mean_k for s, r in runs.items() if r.mean_k is not None}))
        entries += _paired_rows(d, found)
    return entries


def _paired_rows(d: int, found: dict) -> list[dict]:
    """gated - residual at depth d over the seeds both finished: < 0 is the paper's claim."""
    gated, g_jobs = found.get(("gated", d), ({}, []))
    residual, r_jobs = found.get(("residual", d), ({}, []))
    if not set(gated) & set(residual):
        return []
    i = DEPTHS.index(d)
    final = stats.paired({s: r.final_error for s, r in gated.items()}, {s: r.final_error for s, r in residual.items()})
    best = stats.paired({s: r.best_error for s, r in gated.items()}, {s: r.best_error for s, r in residual.items()})
    n = final["n"]
    return [{"paper": PAPER, "table": "Table 1", "spec": f"{g_jobs[0].spec} vs {r_jobs[0].spec}",
             "metric": f"gated - residual test error (points), d={d}", "paired": ["gated", "residual"],
             "paper_value": round(TABLE1["gated"][i] - TABLE1["residual"][i], 2), "ours": final["mean"], **final,
             "holds": CLAIM[final["sign"]], "best_epoch": {**best, "holds": CLAIM[best["sign"]]},
             "epochs": min(gated[s].epochs for s in final["seeds"]),
             "scale": f"the gated and residual rows of d={d}, paired by seed over the {n} seed{'s' if n > 1 else ''} "
                      "both finished; 95% t interval", "command": None}]


def plot(all_jobs: list[Job], path: Path = ROOT / "reproduce" / "gated_fig4.png") -> None:
    """Figure 4: mean training loss over the finished seeds per kind, band min to max, one panel per depth."""
    from archlang.plotting import pyplot

    plt = pyplot()

    cells = _cells(all_jobs)
    fig, axes = plt.subplots(1, len(DEPTHS), figsize=(4 * len(DEPTHS), 3.2), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], DEPTHS):
        for kind in reversed(KINDS):
            runs, _ = cell_runs(cells.get((kind, d), []))
            curves = [r.train_loss for r in runs.values() if r.train_loss]
            if not curves:
                continue
            epochs = range(1, min(map(len, curves)) + 1)
            at = list(zip(*(c[:len(epochs)] for c in curves)))
            label = f"{ {'gated': 'GResNet'}.get(kind, kind)} ({len(curves)} seed{'s' if len(curves) > 1 else ''})"
            line, = ax.semilogy(epochs, [stats.mean(v) for v in at], label=label)
            ax.fill_between(epochs, [min(v) for v in at], [max(v) for v in at], color=line.get_color(), alpha=0.25)
        ax.set_title(f"d = {d}")
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend()
    axes[0][0].set_ylabel("training cross-entropy")
    fig.suptitle("Figure 4: mean over the finished seeds; band: min to max", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _epoch_seconds(job: Job) -> tuple[list[float], int] | None:
    """The measured epoch times of a job (a group's members record the group's) and its planned epochs."""
    run = job.run
    if not run.is_run():
        return None
    seconds = [r.seconds for r in run.read_metrics()]
    return (seconds, int(run.read_recipe()["epochs"])) if seconds else None


def _makespan(durations: list[float], parallel: int) -> float:
    """Wall time of run_all's schedule: jobs in order, each to the first free worker."""
    workers = [0.0] * parallel
    for duration in durations:
        workers[workers.index(min(workers))] += duration
    return max(workers)


def projected_wall_s(all_jobs: list[Job], parallel: int) -> dict[str, float]:
    """All 15 cells x (seed 0 + the seed group), `parallel` at a time, at each job's median and fastest epoch.

    The median epoch of a job is closer to its undisturbed speed than its summed seconds, the
    fastest a lower bound. A group not yet started is estimated from its cell's single run times
    the group/single ratio of fastest epochs measured where both ran (median over those cells):
    fastest against fastest, because the medians of runs that shared the cores with other work
    are inflated by whatever ran beside them (session 4: 4.1-4.6x from medians, 2.0x from the fastest).
    `remaining_s`: the epochs still to train, at the median, in the same schedule.
    """
    cells = _cells(all_jobs)
    measured = {id(j): _epoch_seconds(j) for j in all_jobs}
    ratio, ratio_cells = _group_ratio(cells, measured)
    median, fastest, remaining, estimated, missing = [], [], [], 0, 0
    for job in all_jobs:
        found, scale = measured[id(job)], 1.0
        if found is None and job.seeds and ratio is not None:
            found = next((measured[id(j)] for j in cells[_cell_of(job)] if not j.seeds and measured[id(j)]), None)
            scale, estimated = ratio, estimated + (found is not None)
        if found is None:
            missing += 1
            continue
        seconds, epochs = found
        done = len(seconds) if measured[id(job)] else 0
        median.append(statistics.median(seconds) * epochs * scale)
        fastest.append(min(seconds) * epochs * scale)
        remaining.append(statistics.median(seconds) * (epochs - done) * scale)
    return {"median_epochs_s": round(_makespan(median, parallel), 1),
            "fastest_epochs_s": round(_makespan(fastest, parallel), 1),
            "remaining_s": round(_makespan([r for r in remaining if r > 0], parallel), 1),
            "jobs": len(all_jobs), "estimated_jobs": estimated, "missing_jobs": missing,
            "group_ratio": None if ratio is None else round(ratio, 2), "ratio_cells": ratio_cells}


def _group_ratio(cells: dict[tuple[str, int], list[Job]], measured: dict) -> tuple[float | None, int]:
    """Median over cells of (group's fastest epoch) / (single run's fastest epoch), and how many cells had both."""
    ratios = []
    for cell_jobs in cells.values():
        single = [measured[id(j)] for j in cell_jobs if not j.seeds and measured[id(j)]]
        group = [measured[id(j)] for j in cell_jobs if j.seeds and measured[id(j)]]
        if single and group:
            ratios.append(min(group[0][0]) / min(single[0][0]))
    return (statistics.median(ratios) if ratios else None), len(ratios)


def _cell_of(job: Job) -> tuple[str, int]:
    kind, d = job.name.split("/")[1].rsplit("-d", 1)
    return kind, int(d)


def _timing_jobs(depths: tuple[int, ...], kinds: tuple[str, ...]) -> list[Job]:
    """Each cell's 5 seeds as one grouped --compile process of TIMING_EPOCHS epochs: how Table 1 would train now."""
    return [Job(f"{TIMING}/{job.name.split('/')[1]}", job.spec, "gated-mnist",
                extra=["--compile", "--epochs", str(TIMING_EPOCHS)], seeds=(0, *SEEDS)) for job in jobs(depths, kinds, ())]


def measured_projection(depths: tuple[int, ...], kinds: tuple[str, ...], args: argparse.Namespace) -> list[str]:
    """Train the timing jobs afresh (args.parallel side by side, as the real schedule runs), then per cell:
    its first epoch (compilation included) + 99 x the median of the later ones, in the script's schedule."""
    shutil.rmtree(jobs_module.RUNS / TIMING, ignore_errors=True)  # another machine's or build's epochs say nothing here
    timing = _timing_jobs(depths, kinds)
    jobs_module.run_all(timing, args.data_dir, args.parallel, args.threads)
    lines, durations = [], []
    for job in timing:
        measured = _epoch_seconds(job)
        if measured is None or len(measured[0]) < TIMING_EPOCHS:
            raise SystemExit(f"{job.name} did not train {TIMING_EPOCHS} epochs: see {jobs_module.RUNS / job.name}-seeds.log")
        first, later = measured[0][0], statistics.median(measured[0][1:])
        durations.append(first + later * (EPOCHS - 1))
        lines.append(f"{job.name}: 5 seeds, one --compile process: first epoch {first:.1f} s, then {later:.1f} s; "
                     f"{EPOCHS} epochs {durations[-1] / 3600:.2f} h")
    wall = _makespan(durations, args.parallel)
    _record_timing("table1_projected_wall_s", {"wall": round(wall, 1), "runs": round(sum(durations), 1),
                                               "parallel": args.parallel, "threads": args.threads,
                                               "cells": {j.name.split("/")[1]: round(d, 1)
                                                         for j, d in zip(timing, durations)}})
    lines.append(f"all {len(timing)} cells x 5 seeds, one process per cell, {args.parallel} side by side "
                 f"({args.threads} thread each): {wall / 3600:.2f} h wall "
                 f"({sum(durations) / 3600:.2f} h of runs; goal: 2 h)")
    return lines


def _record_timing(key: str, value: object) -> None:
    """Append one measured figure to reproduce/timing.json (committed: what each machine measured)."""
    data = json.loads(TIMING_FILE.read_text()) if TIMING_FILE.is_file() else {}
    data.setdefault(key, []).append(value)
    atomic_write_text(TIMING_FILE, json.dumps(data, indent=2) + "\n", what="timing.json")


def projection_line(p: dict, parallel: int) -> str:
    measured = p["jobs"] - p["estimated_jobs"] - p["missing_jobs"]
    how = f"{measured} of {p['jobs']} jobs measured"
    if p["estimated_jobs"]:
        how += (f", {p['estimated_jobs']} estimated at {p['group_ratio']} x their cell's single run "
                f"(group/single fastest epoch, median of {p['ratio_cells']} cells)")
    if p["missing_jobs"]:
        how += f", {p['missing_jobs']} with nothing measured left out (the projection is short of them)"
    return (f"all 15 cells x (seed 0 + seeds {','.join(map(str, SEEDS))} grouped), {parallel} jobs side by side: "
            f"{p['median_epochs_s'] / 3600:.2f} h at each job's median epoch time, "
            f"{p['fastest_epochs_s'] / 3600:.2f} h at its fastest (goal: 2 h); {how}; "
            f"still to train of those: {p['remaining_s'] / 3600:.2f} h at the median")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS), choices=DEPTHS, help="cells to run")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="cells to run")
    p.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS),
                   help="seeds beside seed 0, trained together in one process per cell (none: seed 0 only)")
    p.add_argument("--project", action="store_true",
                   help=f"train every cell {TIMING_EPOCHS} epochs, its 5 seeds in one --compile process, in "
                        f"reproduce/runs/{TIMING}/ and print the wall time of 100 epochs from them")
    args = p.parse_args()
    if args.project:
        print("\n".join(measured_projection(tuple(args.depths), tuple(args.kinds), args)))
        return
    wall = run_unless_collecting(jobs(tuple(args.depths), tuple(args.kinds), tuple(args.seeds)), args)
    if wall is not None:
        print(f"wall time this invocation: {wall / 60:.1f} min ({args.parallel} runs side by side, "
              f"{args.threads} thread each)")
        _record_timing("gated_mnist_wall_s", round(wall, 1))
    entries = results()
    print(projection_line(projected_wall_s(jobs(), args.parallel), args.parallel))
    plot(collected(jobs()))
    merge_results([e for e in entries if e["table"] == "Table 1"], (PAPER, "Table 1"))
    merge_results([e for e in entries if e["table"] == "Table 2"], (PAPER, "Table 2"))
    print(f"{len(entries)} results in reproduce/results.json")


if __name__ == "__main__":
    main()
