"""Gated ResNet Table 1 at d = 50 and 100: does a detail the paper leaves open close the gap? (issue 12 item 3)

Our Table 1 runs (reproduce/gated_mnist.py) are 0.1-0.8 points above the paper and gated is not
below residual; mean k ends far below Table 2. Keras' BN momentum and He-2015 block wiring were
ruled out at d = 10. Each hypothesis here changes one thing against those runs (docs/recipes.md,
gated-mnist, says where each comes from):

  first-linear  the 784 -> 50 input layer a Dot alone, no BN/ReLU (`mlp(first=linear)`)
  bn-eps        Keras' BatchNormalization epsilon 1e-3 (`--set bn_eps=1e-3`)
  he-init       Keras' he_normal kernels for its default glorot_uniform (`--set linear_init=kaiming_normal`)
  k-glorot      k drawn from Keras' glorot_uniform on a scalar, U(-sqrt 3, sqrt 3), for the paper's 1
                (`--set gate_init=glorot_uniform`; gated nets only)
  keras         combined: first-linear, bn-eps and Keras' BN momentum 0.99 (`--set bn_momentum=0.01`)

Seeds 0, 1, 2 of a cell train in one process (`archlang train --seeds 0,1,2`), run folders
reproduce/runs/gated-hypotheses/HYP-KIND-dD-seedS. Hypotheses that change only recipe fields each
grouped copy sets for itself (archlang.train.grouping: he-init's linear_init, k-glorot's gate_init)
share one process per kind and depth: a grouped sweep, reproduce/gated_hypotheses/he-init+k-glorot-gated-dD.arch,
its points' run folders gated-hypotheses/he-init+k-glorot-gated-dD/linear_init=...,gate_init=...,seed=S
(6 copies cost 2.3-2.6 single steps, two groups of 3 3.5-4.0: see --project). The others cannot
share: bn-eps and keras change batch-norm fields the copies of a group share, first-linear and keras
change the network. Each row is compared, paired by seed, with the baseline cell's runs of the same
seeds (gated-mnist/KIND-dD and gated-mnist/KIND-dD-seedS, which Table 1 already has). A cell's rows
take every run folder it has, whatever --seeds made them (a group of other seeds, a shared process
or a job of its own), and so does its baseline: --seeds 3 4 adds rows, it never drops seeds 0-2.

    python reproduce/gated_hypotheses.py                    # run or resume everything, two jobs side by side
    python reproduce/gated_hypotheses.py --time-limit 120   # checkpoint and stop after 2 h; run again to go on
    python reproduce/gated_hypotheses.py --hypotheses bn-eps first-linear --depths 100
    python reproduce/gated_hypotheses.py --project          # time a few grouped steps: projected CPU hours
    python reproduce/gated_hypotheses.py --smoke            # 1 epoch on 512 images per job, nothing merged
    python reproduce/gated_hypotheses.py --collect-only
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gated_mnist
import jobs as jobs_module
import stats
from gated_mnist import BLOCKS, DEPTHS, PAPER, TABLE1, TABLE2, cell_runs
from hypotheses_cost import project
from jobs import ROOT, Job, SpecFile, collected, merge_results, parser, run_unless_collecting

from archlang.launch.points import folder_name
from archlang.runs import RunFolder
from archlang.runs.sweep import read_manifest
from archlang.train.grouping import PER_COPY_FIELDS

if TYPE_CHECKING:
    from pathlib import Path

    from archlang.train.recipes import Recipe

TABLE = "Table 1-2 hypotheses"
KINDS = ("gated", "residual")
HYPOTHESIS_DEPTHS = (100, 50)
SEEDS = (0, 1, 2)
SMOKE_FLAGS = ["--epochs", "1", "--subset", "512", "--eval-subset", "1000"]
SPECS = ROOT / "reproduce" / "gated_hypotheses"  # the sweep files of the shared processes


@dataclass(frozen=True)
class Hypothesis:
    name: str
    what: str  # one line: what differs from the Table 1 runs
    spec_args: str = ""  # appended to the mlp(...) arguments
    sets: tuple[str, ...] = ()  # recipe fields, as --set FIELD=VALUE
    kinds: tuple[str, ...] = KINDS

    def spec(self, kind: str, d: int) -> str:
        return f"mlp(depth={d}, width=50, block={BLOCKS[kind]}{self.spec_args})"

    def flags(self) -> list[str]:
        return [flag for field in self.sets for flag in ("--set", field)]

    def fields(self) -> dict[str, str]:
        return dict(s.split("=", 1) for s in self.sets)

    @property
    def per_copy(self) -> bool:
        """Only fields each grouped copy sets for itself: it can share a grouped process with others like it."""
        return not self.spec_args and all(f in PER_COPY_FIELDS for f in self.fields())


HYPOTHESES = (
    Hypothesis("first-linear", "input layer a Dot alone (no BN/ReLU)", spec_args=", first=linear"),
    Hypothesis("bn-eps", "BN epsilon 1e-3 (Keras)", sets=("bn_eps=1e-3",)),
    Hypothesis("he-init", "he_normal kernels (Keras), zero bias", sets=("linear_init=kaiming_normal",)),
    Hypothesis("k-glorot", "k ~ U(-sqrt 3, sqrt 3) (Keras glorot_uniform of a scalar)", sets=("gate_init=glorot_uniform",),
               kinds=("gated",)),
    Hypothesis("keras", "first-linear + BN epsilon 1e-3 + BN momentum 0.01 (Keras' 0.99)", spec_args=", first=linear",
               sets=("bn_eps=1e-3", "bn_momentum=0.01")),
)
BY_NAME = {h.name: h for h in HYPOTHESES}


@dataclass(frozen=True)
class Cell:
    """One hypothesis at one kind and depth: its own grouped job, or its points in a job it shares."""

    hypothesis: Hypothesis
    kind: str
    d: int
    job: Job
    points: tuple[str, ...] = ()  # in a shared job (a grouped sweep): its points' folder names, by seed
    smoke: bool = False
    spec_file: SpecFile | None = None  # a shared job's sweep file: named here, written only before training

    def trained(self) -> list:
        """Every group of this cell's run folders that exists, whatever seeds this invocation asks for: the
        groups of its own job (jobs.collected) and, for a per-copy hypothesis, its points in each shared
        process of its kind and depth. Each has runs, seeds, folders and command, as gated_mnist.cell_runs reads."""
        h = self.hypothesis
        found: list = collected([_own_job(h, self.kind, self.d, SEEDS, self.smoke)])
        return found + (_shared_members(h, self.kind, self.d, self.smoke) if h.per_copy else [])


@dataclass(frozen=True)
class _Members:
    """One hypothesis's points in one shared process: what gated_mnist.cell_runs reads of a job."""

    runs: list[RunFolder]
    seeds: tuple[int, ...]  # empty: each run's seed is its recipe's
    folders: list
    job: Job  # the job that trains them (the command that made their numbers)

    def command(self, data_dir: str) -> str:
        return self.job.command(data_dir)


def _value(text: str) -> str:
    """A recipe value as a sweep set writes it: a name bare (its point folders then read linear_init=kaiming_normal)."""
    return text if text.isidentifier() else repr(text)


def _fields(hypotheses: tuple[Hypothesis, ...]) -> list[str]:
    return list(dict.fromkeys(f for h in hypotheses for f in h.fields()))


@functools.cache
def _gated_mnist_recipe() -> Recipe:
    """The gated-mnist recipe, built once: building it reads the recipe files (a fifth of a second a call)."""
    from archlang.train.recipes import build_recipe

    return build_recipe("gated-mnist").recipe


def _values(h: Hypothesis, fields: list[str]) -> tuple[str, ...]:
    """h's recipe values of these fields, as the sweep writes them: its own, else gated-mnist's."""
    return tuple(_value(h.fields().get(f, str(getattr(_gated_mnist_recipe(), f)))) for f in fields)


def shared_spec(hypotheses: tuple[Hypothesis, ...], kind: str, d: int, seeds: tuple[int, ...]) -> str:
    """The grouped sweep of per-copy hypotheses: each point's recipe is its hypothesis's `--set` on gated-mnist."""
    fields = _fields(hypotheses)
    rows = ", ".join("(" + ", ".join(_values(h, fields)) + ")" for h in hypotheses)
    return (f"# Gated ResNet Table 1 hypotheses {', '.join(h.name for h in hypotheses)}: {kind}, d={d}, seeds "
            f"{', '.join(map(str, seeds))}, written by\n# reproduce/gated_hypotheses.py. They differ from Table 1 only "
            "in recipe fields each grouped copy sets\n# for itself (archlang.train.grouping): one process trains "
            "them all; each point's recipe is its\n# hypothesis's --set on gated-mnist (the other field at the "
            "recipe's value).\n"
            f"let ({', '.join(fields)}) = {{{rows}}}\nlet seed = {{{', '.join(map(str, seeds))}}}\n"
            f"{hypotheses[0].spec(kind, d)}\ntrain({', '.join(f'{f}={f}' for f in fields)}, seed=seed)\n")


def _prefix(smoke: bool) -> str:
    return "smoke-gated-hypotheses" if smoke else "gated-hypotheses"


def _extra(smoke: bool) -> list[str]:
    return list(SMOKE_FLAGS) if smoke else []


def _how(d: int, smoke: bool) -> list[str]:
    """How a job executes, not what it trains (no part of the run's hash): the d = 100 jobs train with
    --compile (benchmarks/bench_seeds.py --copies 3 --compile: 24% less CPU a step, equal to rounding);
    the d = 50 jobs had finished before --compile existed. Smoke runs stay eager (no C++ build in CI)."""
    return ["--compile"] if d == 100 and not smoke else []


def _own_job(h: Hypothesis, kind: str, d: int, seeds: tuple[int, ...], smoke: bool) -> Job:
    """The job of a hypothesis that shares no process: `seeds` grouped, folders HYP-KIND-dD-seedS."""
    return Job(f"{_prefix(smoke)}/{h.name}-{kind}-d{d}", h.spec(kind, d), "gated-mnist",
               extra=h.flags() + _extra(smoke) + _how(d, smoke), seeds=tuple(seeds))


def _shared_job(stem: str, d: int, smoke: bool) -> Job:
    """The grouped-sweep job of a shared process: sweep file SPECS/STEM.arch, sweep folder PREFIX/STEM."""
    spec = (SPECS / f"{stem}.arch").relative_to(ROOT)
    return Job(f"{_prefix(smoke)}/{stem}", str(spec), "gated-mnist", extra=_extra(smoke) + _how(d, smoke),
               grouped_sweep=True)


def _shared_cells(hypotheses: tuple[Hypothesis, ...], kind: str, d: int, seeds: tuple[int, ...],
                  smoke: bool) -> list[Cell]:
    """One grouped-sweep job for these hypotheses (its file refused if it differs; before_training writes it)."""
    stem = f"{'+'.join(h.name for h in hypotheses)}-{kind}-d{d}" + ("" if seeds == SEEDS else
                                                                      "-seeds" + "-".join(map(str, seeds)))
    spec = SpecFile(SPECS / f"{stem}.arch", shared_spec(hypotheses, kind, d, seeds), "this script")
    spec.check()
    job = _shared_job(stem, d, smoke)
    fields = _fields(hypotheses)
    return [Cell(h, kind, d, job, tuple(folder_name((*zip(fields, _values(h, fields)), ("seed", str(s))))
                                        for s in seeds), smoke, spec) for h in hypotheses]


def _shared_members(h: Hypothesis, kind: str, d: int, smoke: bool) -> list[_Members]:
    """h's points in every shared process of this kind and depth that exists (sweep folders STEM or
    STEM-seeds..., as _shared_cells names them), by their sweep.json: whichever seeds and partners it had."""
    where, found = jobs_module.RUNS / _prefix(smoke), []
    for folder in _sweep_folders(where, f"*-{kind}-d{d}"):
        manifest = read_manifest(folder)
        fields = [f for f in manifest.varying if f != "seed"] if manifest else []
        if manifest is None or not set(h.fields()) <= set(fields):
            continue
        mine = dict(zip(fields, _values(h, fields)))
        points = [folder / p.name for p in manifest.points if {f: p.values[f] for f in fields} == mine]
        if points:
            found.append(_Members([RunFolder(p) for p in points], (), points, _shared_job(folder.name, d, smoke)))
    return found


def cells(hypotheses: tuple[Hypothesis, ...] = HYPOTHESES, depths: tuple[int, ...] = HYPOTHESIS_DEPTHS,
          seeds: tuple[int, ...] = SEEDS, smoke: bool = False) -> list[Cell]:
    """Deepest first, so the longest jobs start early and the two workers end together. Per kind and depth,
    the per-copy hypotheses (two or more) share one job; every other hypothesis has a job of its own."""
    found = []
    for d in sorted(depths, reverse=True):
        for kind in KINDS:
            mine = tuple(h for h in hypotheses if kind in h.kinds)
            shared = tuple(h for h in mine if h.per_copy) if sum(h.per_copy for h in mine) > 1 else ()
            if shared:  # first: the largest group, the longest job
                found += _shared_cells(shared, kind, d, tuple(seeds), smoke)
            found += [Cell(h, kind, d, _own_job(h, kind, d, tuple(seeds), smoke), smoke=smoke)
                      for h in mine if h not in shared]
    return found


def _sweep_folders(where: Path, stem: str) -> list[Path]:
    """The sweep folders of shared processes named STEM or STEM-seeds... (as _shared_cells names them) that exist."""
    return sorted([*where.glob(stem), *where.glob(f"{stem}-seeds*")])


def _check_shared_seeds(job: Job, seeds: tuple[int, ...]) -> None:
    """Refuse seeds that a shared process of the same hypotheses, kind and depth trained under another seed
    list: that list made another sweep file and folder (STEM-seeds...), so those seeds would train again."""
    for folder in _sweep_folders(job.folder.parent, job.folder.name.split("-seeds")[0]):
        manifest = read_manifest(folder) if folder != job.folder else None
        trained = sorted({int(p.values["seed"]) for p in manifest.points}) if manifest else []
        if set(trained) & set(seeds):
            raise SystemExit(f"{job.name}: seeds {','.join(map(str, seeds))} asked for, but {folder.name} trained seeds "
                             f"{','.join(map(str, trained))} in one shared process; ask for exactly those seeds, or "
                             "for seeds none of which it has (a new process)")


def before_training(chosen: list[Cell], seeds: tuple[int, ...]) -> None:
    """What only training does first: refuse seeds that overlap a trained shared process of other seeds, then
    write the shared jobs' missing sweep files (collecting and --project write none)."""
    for job in distinct_jobs([c for c in chosen if c.spec_file]):
        _check_shared_seeds(job, seeds)
    for spec in dict.fromkeys(c.spec_file for c in chosen if c.spec_file):
        spec.write()


def distinct_jobs(chosen: list[Cell]) -> list[Job]:
    """Each job once (cells sharing a process share its job), in the cells' order."""
    return list({c.job.name: c.job for c in chosen}.values())


def _by_seed(runs: dict, attribute: str, seeds: set[int] | None = None) -> dict[int, float]:
    return {s: getattr(r, attribute) for s, r in runs.items()
            if getattr(r, attribute) is not None and (seeds is None or s in seeds)}


def _compare(runs: dict, baseline: dict, attribute: str) -> dict:
    """This hypothesis's seeds described, the baseline over the same seeds, and hypothesis - baseline paired."""
    mine = _by_seed(runs, attribute)
    return {**stats.describe(mine), "baseline": stats.describe(_by_seed(baseline, attribute, set(mine))),
            "vs_baseline": stats.paired(mine, _by_seed(baseline, attribute))}


def cell_rows(cell: Cell, runs: dict, used: list) -> list[dict]:
    """Table 1 (final and best-epoch error) and, for gated nets, Table 2 (mean k) rows of one cell; `used`:
    the groups that made `runs` (their commands)."""
    h, kind, d = cell.hypothesis, cell.kind, cell.d
    baseline, _ = cell_runs(collected(gated_mnist.jobs((d,), (kind,))))  # Table 1's runs of every seed it has
    i = DEPTHS.index(d)
    epochs = sorted({r.epochs for r in runs.values()})
    base = {"paper": PAPER, "table": TABLE, "hypothesis": h.name, "changes": h.what, "spec": h.spec(kind, d),
            "epochs": epochs[0] if len(epochs) == 1 else "/".join(map(str, epochs)),
            "scale": (f"full scale (all 60,000 MNIST training images), {len(runs)} seeds grouped in {len(used)} "
                      f"process{'es' if len(used) > 1 else ''}; vs_baseline: minus the Table 1 run of the same "
                      "seed, 95% t interval"),
            "command": "; ".join(g.command("../shared/data") for g in used)}
    final = _compare(runs, baseline, "final_error")
    rows = [{**base, "metric": f"test error (%), {kind}, d={d}, {h.name}", "paper_value": TABLE1[kind][i],
             "ours": final["mean"], **final, "best_epoch": _compare(runs, baseline, "best_error")}]
    if kind == "gated" and _by_seed(runs, "mean_k"):
        k = _compare(runs, baseline, "mean_k")
        rows.append({**base, "metric": f"mean k, d={d}, {h.name}", "paper_value": TABLE2[i], "ours": k["mean"], **k})
    return rows


def claim_row(h: Hypothesis, d: int, found: dict[str, dict]) -> list[dict]:
    """gated - residual under the hypothesis, paired by seed: the paper's claim is < 0."""
    if not set(found.get("gated", {})) & set(found.get("residual", {})):
        return []
    i = DEPTHS.index(d)
    final = stats.paired(_by_seed(found["gated"], "final_error"), _by_seed(found["residual"], "final_error"))
    best = stats.paired(_by_seed(found["gated"], "best_error"), _by_seed(found["residual"], "best_error"))
    return [{"paper": PAPER, "table": TABLE, "hypothesis": h.name, "changes": h.what,
             "metric": f"gated - residual test error (points), d={d}, {h.name}", "paired": ["gated", "residual"],
             "paper_value": round(TABLE1["gated"][i] - TABLE1["residual"][i], 2), "ours": final["mean"], **final,
             "holds": gated_mnist.CLAIM[final["sign"]],
             "best_epoch": {**best, "holds": gated_mnist.CLAIM[best["sign"]]},
             "epochs": min(r.epochs for runs in found.values() for r in runs.values()),
             "scale": f"the gated and residual rows of {h.name} at d={d}, paired by seed; 95% t interval",
             "command": None}]


def results(all_cells: list[Cell]) -> list[dict]:
    """Every finished cell's rows, then per hypothesis and depth the gated - residual row. A cell's rows take
    every run folder it has (Cell.trained), whatever seeds all_cells were made with."""
    rows: list[dict] = []
    found: dict[tuple[str, int], dict[str, dict]] = {}
    for cell in all_cells:
        runs, used = cell_runs(cell.trained())
        if runs:
            rows += [{**row, "closes_gap": closes_gap(row)} for row in cell_rows(cell, runs, used)]
            found.setdefault((cell.hypothesis.name, cell.d), {})[cell.kind] = runs
    for (name, d), by_kind in found.items():
        rows += claim_row(BY_NAME[name], d, by_kind)
    return rows


def closes_gap(row: dict) -> bool:
    """The hypothesis moved the cell towards the paper (paired interval excludes 0 on that side) and its
    own 95% interval reaches the paper's value."""
    paper, baseline, interval = row["paper_value"], row["baseline"]["mean"], row["interval"]
    if baseline is None or interval is None:
        return False
    reaches = interval[0] <= paper if baseline > paper else interval[1] >= paper
    return stats.moved(row["vs_baseline"]["sign"], baseline, paper) == "towards" and reaches


def verdict(row: dict) -> str:
    """One line: the hypothesis's mean against the baseline's and the paper's, and what the pairing says."""
    if "paired" in row:
        return f"{row['metric']}: {row['ours']} (paper {row['paper_value']}); {row['holds']}"
    vs, paper = row["vs_baseline"], row["paper_value"]
    moved = {"below 0": "below", "above 0": "above", "inconclusive": "not distinguishable from"}[vs["sign"]]
    gap = "" if row["baseline"]["mean"] is None else f"{row['baseline']['mean'] - paper:+.2f} -> "
    return (f"{row['metric']}: {row['ours']} +- {row['std']} (seeds {row['seeds']}), {moved} the baseline's "
            f"{row['baseline']['mean']} (paired {vs['mean']}, 95% {vs['interval']}); against the paper's {paper}: "
            f"{gap}{row['ours'] - paper:+.2f}" + ("; CLOSES THE GAP" if row["closes_gap"] else ""))


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--hypotheses", nargs="+", default=[h.name for h in HYPOTHESES], choices=list(BY_NAME))
    p.add_argument("--depths", type=int, nargs="+", default=list(HYPOTHESIS_DEPTHS), choices=HYPOTHESIS_DEPTHS)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds grouped in each job's process")
    p.add_argument("--smoke", action="store_true",
                   help=f"train with {' '.join(SMOKE_FLAGS)} under smoke-gated-hypotheses/; print, merge nothing")
    p.add_argument("--project", action="store_true", help="only time a few steps per job and project the CPU cost")
    p.add_argument("--steps", type=jobs_module.positive_int, default=5, help="--project: timed steps per side (their median is used)")
    args = p.parse_args(argv)
    chosen = cells(tuple(BY_NAME[n] for n in args.hypotheses), tuple(args.depths), tuple(args.seeds), args.smoke)
    if args.project:
        print("\n".join(project(chosen, args.steps, args.parallel)))
        return
    if not args.collect_only:
        before_training(chosen, tuple(args.seeds))
    run_unless_collecting(distinct_jobs(chosen), args)
    rows = results(cells(smoke=args.smoke))  # every seed trained, not only those asked for now
    print("\n".join(verdict(r) for r in rows) or "no finished hypothesis runs yet")
    if not args.smoke:
        merge_results(rows, (PAPER, TABLE))
        print(f"{len(rows)} results in reproduce/results.json")


if __name__ == "__main__":
    main()
