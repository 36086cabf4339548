"""Highway networks Figures 2-4 on MNIST: gate biases, gate activity and lesioning of the best 50-layer tanh net.

The command order (the search trains the nets this script analyses):

    python reproduce/highway_fig1.py --time-limit 120   # first: the Figure 1 random search; again until it is done
    python reproduce/highway_figs.py                    # then: Figures 2-4 of its best finished depth-50 tanh run
    python reproduce/highway_figs.py --run PATH         # of any finished highway run, into PATH/analysis/ (not merged)
    python reproduce/highway_figs.py --subset N         # the best run on N training images, into its analysis/ too
    python reproduce/highway_figs.py --project          # CPU seconds of the evaluation, on a fresh 50-layer net
    python reproduce/highway_figs.py --smoke            # CI: a tiny net trained a few steps; outputs in a temp dir

The search's best tanh-50 net kept its gates shut (its bias, -7.08); the paper's own net, gate bias -2, is
reproduce/highway_fig2_net.py, which trains it and analyses it with this module's functions.

Srivastava et al., "Training Very Deep Networks", Sec. 4: Figure 2 shows, for the best 50-hidden-layer
fully-connected highway net (a plain first layer to 50 units, then 49 highway layers of 50 blocks,
tanh), (a) the transform gate biases, (b) the mean transform gate output over all training examples,
(c) the gate outputs and (d) the block outputs for one random training sample, each layer x block;
Figure 3 each digit class's mean gate activity minus the all-sample mean; Figure 4 the training set
error with all transform gates of one layer closed (T = 0: the layer copies its input), per layer,
with the unlesioned error as a dashed line. Everything is evaluated over the 60,000 training images
in batches of 1,000 (eval mode, no gradients).

Which net (footnote 3: "best" minimises "the best training set error achieved using each
configuration"): of the finished depth-50 tanh runs of the Figure 1 search (highway-50-part*.arch;
diverged and unfinished runs never count), the RECHECK best by their metrics rows' training error
(a train-mode running meter, so it only ranks; ties by the lower final loss) are evaluated on the
training set in eval mode with their final weights, and the lowest of those is the net. Our search
is 20 settings per depth and type, 10 epochs each (the paper's: 100 runs). Only that net over all
60,000 images makes the committed figures and results.json rows.

Not reproducible here: the bottom rows of Figures 2-4 are a CIFAR-100 net, and CIFAR-100 is not on
this machine. The paper's numbers are read off its text (the figures are not in our copy): biases
initialised to -2 "mostly decreased further", most change in the first ~15 layers, lesioning any
early layer raises the error significantly and lesioning layers 15-45 has close to no effect.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import highway_fig1
import jobs as jobs_module
from jobs import ROOT, merge_results

from archlang.errors import ArchlangError
from archlang.runs import RunFolder
from archlang.runs.sweep import read_manifest

if TYPE_CHECKING:  # torch is imported only once there is work: choosing (or refusing) a run needs none
    import torch

    from archlang.analysis.gates import HighwayMaps
    from archlang.analysis.prune import Lesion
    from archlang.runs import LoadedRun

PAPER = highway_fig1.PAPER
TABLE = "Figures 2-4"
LAYERS = 50  # the paper's "50 hidden layer" net: the plain first layer and 49 highway layers
SAMPLE_SEED = 2015  # picks Figure 2's "single random training sample"
BATCH = 1000  # evaluation batch: bounds the memory whatever the dataset's size
MATTERS = 1.0  # points of training error a lesion must add for the layer to count as used
# Footnote 3's "best training set error": the metrics rows hold the running train-mode meter (taken while
# the weights move through an epoch), so the few best by it are evaluated on the training set, eval mode,
# through training's own evaluate(); one pass is about 2 CPU s at 50 layers (--project), 3 bound the cost.
RECHECK = 3
# Sec. 4.2 (MNIST): "the error rises significantly if any one of the early layers is removed, but layers
# 15 - 45 seem to have close to no effect"; "About 60% of the layers don't learn to contribute". 60% of 49
# is ~30 idle layers, the 15-45 stretch: the other ~40% are the early layers and those after 45. So the
# paper's 15 is where the early layers that matter end, not the last layer that matters; of the layers
# after 45 it gives no number.
PAPER_EARLY_END = 15  # "about": read off the text, its Figure 4 is not in our copy
IDLE = (15, 45)
FIGURES = {n: ROOT / "reproduce" / f"highway_fig{n}.png" for n in (2, 3, 4)}
SMOKE_SPEC = 'mlp(depth=5, width=50, block=highway, bn=false, act="tanh", bias_init=-2.0)'
FRESH_SPEC = f'mlp(depth={LAYERS - 1}, width=50, block=highway, bn=false, act="tanh", bias_init=-2.0)'


@dataclass(frozen=True)
class Analysis:
    """Figures 2-4's numbers for one run, with the CPU seconds of the two passes over the data."""

    run: LoadedRun
    maps: HighwayMaps
    bias: torch.Tensor  # (layers, blocks) transform gate biases
    initial_bias: torch.Tensor  # (layers,) the spec's bias_init of each highway layer
    baseline: float  # training error (%), not lesioned
    lesions: list[Lesion]
    images: int
    maps_seconds: float
    lesion_seconds: float


@dataclass(frozen=True)
class Candidate:
    run: RunFolder
    best_error: float  # lowest per-epoch training error (%): footnote 3's criterion
    final_loss: float


def search_runs() -> list[RunFolder]:
    """Every depth-50 tanh highway point of the Figure 1 search, as that script names and collects them."""
    parts = len(list(highway_fig1.SPECS.glob(f"highway-{LAYERS}-part*.arch")))
    group = highway_fig1.jobs(highway_fig1.BLOCK * max(parts, 1), highway_fig1.EPOCHS).get(("highway", LAYERS), [])
    found = []
    for job in group:
        manifest = read_manifest(jobs_module.RUNS / job.name)
        for point in manifest.points if manifest else []:
            if point.values.get("a", "").strip('"') == "tanh":
                found.append(RunFolder(jobs_module.RUNS / job.name / point.name))
    return found


def ranked(runs: list[RunFolder]) -> list[Candidate]:
    """The finished runs, best first by footnote 3 (lowest training error reached), then final loss."""
    found = []
    for run in runs:
        rows = run.read_metrics() if run.status() == "finished" else []
        errors = [r.train_error for r in rows if r.train_error == r.train_error]  # NaN never ranks
        if errors:
            found.append(Candidate(run, min(errors), rows[-1].train_loss))
    return sorted(found, key=lambda c: (c.best_error, c.final_loss))


def no_finished_run() -> ArchlangError:
    where = jobs_module.RUNS / f"highway-fig1/highway-{LAYERS}-part*"
    return ArchlangError(f"no finished depth-{LAYERS} tanh highway run under {where}: run "
                         "`python reproduce/highway_fig1.py --time-limit M` first, or give --run PATH")


def finished_run(path: str) -> RunFolder:
    run = RunFolder.open(path)
    if run.status() != "finished":
        raise ArchlangError(f"the run is {run.status()}, not finished", path=path,
                            hint="finish it (archlang train --resume), or give a finished highway run")
    return run


def sample_index(total: int) -> int:
    return random.Random(SAMPLE_SEED).randrange(total)


def analyse(path: Path, data_dir: str | None, subset: int | None) -> Analysis:
    """Figures 2-4's numbers for one run folder: the gate maps in one pass, then one pass per lesion."""
    import torch

    from archlang.analysis.gates import gate_biases, highway_maps
    from archlang.analysis.prune import lesion
    from archlang.analysis.run import data_loader, load_run
    from archlang.analysis.sites import sites

    run = load_run(str(path))
    loader = data_loader(run, "train", data_dir, subset, batch_size=BATCH)
    index = sample_index(loader.total)
    start = time.process_time()
    maps = highway_maps(run.model, loader.batches(0), run.compiled.num_classes, index)
    maps_seconds = time.process_time() - start
    start = time.process_time()
    baseline, lesions = lesion(run, loader)
    initial = [s.node.bias_init for s in sites(run.compiled.network) if s.kind == "highway"]  # type: ignore[attr-defined]
    return Analysis(run, maps, gate_biases(run.model), torch.tensor(initial), baseline, lesions, loader.total,
                    maps_seconds, time.process_time() - start)


def draw(found: Analysis, figures: dict[int, Path]) -> None:
    from archlang.analysis.plots import plot_highway_maps, plot_lesion

    title = textwrap.fill(f"{found.run.compiled.canonical} ({found.images} training images)", 75)
    plot_highway_maps(found.maps, found.bias, (figures[2], figures[3]), title, unit="digit")
    plot_lesion(found.baseline, found.lesions, figures[4], title)


def lesion_numbers(baseline: float, lesions: list[Lesion]) -> dict[str, Any]:
    """Fig. 4 in numbers: the layers whose lesion adds more than MATTERS points of training error; where
    the early ones end (the last of them up to layer 45, the end of the paper's idle stretch; 0: none);
    those after 45 (None: the net has no layer after 45); the most any layer of layers 15-45 adds."""
    used = [x.layer for x in lesions if x.error - baseline > MATTERS]
    worst = max(lesions, key=lambda x: x.error)
    idle = [x.error - baseline for x in lesions if IDLE[0] <= x.layer <= IDLE[1]]
    late = [x for x in used if x > IDLE[1]] if any(x.layer > IDLE[1] for x in lesions) else None
    return {"used": used, "early_end": max([x for x in used if x <= IDLE[1]], default=0), "late_used": late,
            "worst_layer": worst.layer, "worst": worst.error, "idle_most": max(idle) if idle else None}


def rows(found: Analysis, base: dict[str, Any]) -> list[dict[str, Any]]:
    """results.json rows: Fig. 4's errors and Fig. 2's gate statistics (Fig. 3 is read off its figure)."""
    maps, bias, baseline, lesions = found.maps, found.bias, found.baseline, found.lesions
    numbers = lesion_numbers(baseline, lesions)
    from archlang.analysis.gates import fraction_below, over_gates

    below = fraction_below(bias, found.initial_bias[:, None].double())

    def row(metric: str, ours: float, paper: str | float | None, **extra: Any) -> dict[str, Any]:
        value = ours if isinstance(ours, int) else float(f"{ours:.4g}")
        return {**base, "metric": metric, "paper_value": paper, "ours": value, **extra}

    errors = [x.error for x in lesions]
    found_rows = [
        row("training error (%), not lesioned", baseline, "near 0 (Fig. 4's dashed line)"),
        row("training error (%), worst single-layer lesion", numbers["worst"], None, layer=numbers["worst_layer"],
            per_layer_error=errors, baseline=baseline),  # each layer's lesioned error; the unlesioned one unrounded
        row(f"fraction of layers whose lesion adds at most {MATTERS:g} point of training error",
            1 - len(numbers["used"]) / len(lesions), 0.6, layers_that_matter=numbers["used"]),  # "About 60% ..."
        row(f"end of the early layers that matter: last of layers 1-{IDLE[1]} whose lesion adds more than "
            f"{MATTERS:g} point of training error (paper: about {PAPER_EARLY_END})", numbers["early_end"],
            PAPER_EARLY_END),
        row("mean transform gate output, all gates and training images", over_gates(maps.mean_t), None),
        row("fraction of gates whose mean output T < 0.1", fraction_below(maps.mean_t, 0.1), None),
        row("fraction of gate biases below their initial value", below, "most (\"most biases decreased further\")",
            initial=sorted(set(found.initial_bias.tolist()))),
    ]
    if numbers["idle_most"] is not None:
        found_rows.insert(4, row(f"most training error (points) a lesion of one of layers {IDLE[0]}-{IDLE[1]} adds",
                                 numbers["idle_most"], "close to no effect"))
    if numbers["late_used"] is not None:  # the paper's ~40% that matter include these; it counts none of them
        found_rows.insert(4, row(f"layers after {IDLE[1]} whose lesion adds more than {MATTERS:g} point of training "
                                 "error", len(numbers["late_used"]), "not stated in numbers", layers=numbers["late_used"]))
    return found_rows


def shown(path: str | Path) -> Path:
    """A path as the rows record it: relative to the repository where it is inside."""
    where = Path(path).resolve()
    return where.relative_to(ROOT) if where.is_relative_to(ROOT) else where


def command_line(args: argparse.Namespace) -> str:
    """The command that makes these rows (the search's best run unless --run)."""
    run = f" --run {shown(args.run)}" if getattr(args, "run", None) else ""
    return (f"python reproduce/highway_figs.py{run}" + (f" --subset {args.subset}" if args.subset else "")
            + (f" --data-dir {args.data_dir}" if args.data_dir else ""))


def base_row(found: Analysis, selection: str, command: str) -> dict[str, Any]:
    run = found.run
    return {"paper": PAPER, "table": TABLE, "spec": run.compiled.canonical, "run": str(shown(run.folder)),
            "selection": selection, "epochs": run.recipe.get("epochs"), "sample_index": found.maps.sample_index,
            "scale": f"MNIST, {found.images} training images (CIFAR-100 panels: no CIFAR-100 here)",
            "command": command}


def evaluated(order: list[Candidate], data_dir: str | None, subset: int | None) -> tuple[list[tuple[float, Candidate]], float]:
    """The first RECHECK candidates' training error (%) with their final weights (the ones analysed), in
    eval mode through training's own evaluate(), over the images the analysis uses; and its CPU seconds."""
    from archlang.analysis.run import data_loader, error_percent, load_run

    start = time.process_time()
    found = []
    for candidate in order[:RECHECK]:
        run = load_run(str(candidate.run.path))
        found.append((error_percent(run.model, data_loader(run, "train", data_dir, subset, batch_size=BATCH)), candidate))
    return found, time.process_time() - start


def pick(order: list[Candidate], data_dir: str | None, subset: int | None) -> tuple[Path, str]:
    """Footnote 3's best of the ranked search runs: the lowest evaluated training error of the first RECHECK
    (ties: the meter's order), and the line saying so."""
    found, seconds = evaluated(order, data_dir, subset)
    error, best = min(found, key=lambda pair: pair[0])  # min keeps the first of equals: the meter's order
    images = f"the first {subset}" if subset else "all"
    print(f"footnote 3: {len(found)} training-set evaluations, CPU seconds {seconds:.1f}")
    return best.run.path, (f"best of {len(order)} finished depth-{LAYERS} tanh runs of the Figure 1 search by training "
                           f"error (footnote 3): the {len(found)} lowest by the metrics rows' running train-mode error "
                           f"(lowest epoch), then each evaluated in eval mode with its final weights on {images} "
                           f"training images: {error:.3g}% (its meter's {best.best_error:.3g}%)")


def choose(args: argparse.Namespace) -> tuple[Path, str]:
    """The run to analyse and a line saying why it is that one. Torch threads are set once there is work:
    the choice of a given run, and the refusal of a missing one, import no torch."""
    if args.run:
        path = finished_run(args.run).path
        threads(args.threads)
        return path, "given with --run"
    order = ranked(search_runs())
    if not order:
        raise no_finished_run()
    threads(args.threads)
    return pick(order, args.data_dir, args.subset)


def report(found: Analysis, selection: str, args: argparse.Namespace, figures: dict[int, Path]) -> list[dict]:
    draw(found, figures)
    entries = rows(found, base_row(found, selection, command_line(args)))
    show(found, selection, entries, figures)
    return entries


def show(found: Analysis, selection: str, entries: list[dict], figures: dict[int, Path]) -> None:
    """What the analysis found, printed: the run, its sample, every row's number, the cost, the figures."""
    print(f"run: {found.run.folder} ({selection})")
    print(f"sample: training image {found.maps.sample_index} (random.Random({SAMPLE_SEED}))")
    for e in entries:
        print(f"  {e['metric']}: {e['ours']}" + (f"   (paper: {e['paper_value']})" if e["paper_value"] else ""))
    print(f"CPU seconds: gate maps {found.maps_seconds:.1f}, lesions {found.lesion_seconds:.1f} "
          f"over {found.images} images")
    if figures:
        print("figures: " + ", ".join(str(p) for p in figures.values()))


def write_beside(entries: list[dict], path: Path, why: str) -> None:
    """Rows that must not stand in results.json for the paper's net: a file of their own."""
    import json

    from archlang.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(entries, indent=2) + "\n", what="the analysis's results")
    print(f"{len(entries)} results ({why}: not merged) in {path}")


def smoke(folder: Path, data_dir: str) -> int:
    """Train a tiny highway net for 6 steps with `archlang train`, then the whole analysis into `folder`."""
    from archlang.cli import main as archlang
    from archlang.fileio import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "smoke.arch"
    atomic_write_text(spec, SMOKE_SPEC + "\n", what="the smoke's spec")
    # In this process: the imports are paid once, so the smoke takes seconds.
    code = archlang(["train", str(spec), "--recipe", "highway-mnist", "--epochs", "1", "--subset", "600",
                     "--eval-subset", "200", "--data-dir", data_dir, "--out", str(folder), "--name", "smoke-highway",
                     "--threads", "1", "--no-progress"])
    if code:
        return code
    found = analyse(folder / "smoke-highway", data_dir, 600)
    args = argparse.Namespace(data_dir=data_dir, subset=600)
    entries = report(found, "smoke: a 6-step tiny net", args, {n: folder / f"highway_fig{n}.png" for n in FIGURES})
    write_beside(entries, folder / "results.json", "smoke")
    return 0


def project(data_dir: str) -> None:
    """CPU seconds of one gate-map pass and one evaluation over the training set, on a fresh 50-layer net."""
    from archlang.analysis.gates import highway_maps
    from archlang.analysis.run import data_loader, error_percent, load_run

    run = load_run(FRESH_SPEC)
    loader = data_loader(run, "train", data_dir, None, batch_size=BATCH, dataset="mnist", recipe="highway-mnist")
    start = time.process_time()
    highway_maps(run.model, loader.batches(0), 10, sample_index(loader.total))
    maps = time.process_time() - start
    start = time.process_time()
    error_percent(run.model, loader)
    once = time.process_time() - start
    print(f"fresh {FRESH_SPEC} over {loader.total} training images, CPU seconds: gate maps {maps:.1f}, "
          f"one evaluation {once:.1f}; all of Figures 2-4 (maps, then {LAYERS} evaluations): "
          f"about {maps + LAYERS * once:.0f} s")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="PATH", help="analyse this finished highway run folder instead of the "
                   "search's best depth-50 tanh run")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="where MNIST is")
    p.add_argument("--subset", type=int, help="evaluate on the first N training images only (not the paper's)")
    p.add_argument("--threads", type=jobs_module.positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--project", action="store_true", help="time the evaluation on a fresh 50-layer net; "
                   "reads no run, writes nothing")
    p.add_argument("--smoke", nargs="?", const="", metavar="DIR", help="train a tiny net a few steps and "
                   "make the figures and rows from it in DIR (default: a new temp dir); nothing merged")
    args = p.parse_args(argv)
    if args.subset is not None and args.subset < 1:
        p.error(f"--subset must be a positive number of images, got {args.subset}")
    return args


def threads(count: int) -> None:
    """Set only once there is work: the choice of a run, and its refusal, import no torch."""
    import torch

    torch.set_num_threads(count)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if args.smoke is not None:
            threads(args.threads)
            return smoke(Path(args.smoke or tempfile.mkdtemp(prefix="highway-figs-")).resolve(), args.data_dir)
        if args.project:
            threads(args.threads)
            project(args.data_dir)
            return 0
        path, selection = choose(args)
        # Only the search's best net over the whole training set is the paper's Figures 2-4: any other run,
        # or fewer images, writes beside the run and leaves results.json and the committed figures alone.
        paper_figures = args.run is None and args.subset is None
        folder = None if paper_figures else RunFolder(path).analysis_dir()
        figures = FIGURES if folder is None else {n: folder / f"highway_fig{n}.png" for n in FIGURES}
        entries = report(analyse(path, args.data_dir, args.subset), selection, args, figures)
        if folder is not None:
            write_beside(entries, folder / "highway_figs.json", "--run" if args.run else "--subset")
            return 0
    except ArchlangError as err:
        print(err.render(), file=sys.stderr)
        return 2
    merge_results(entries, (PAPER, TABLE))
    print(f"{len(entries)} results merged into {jobs_module.RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
