"""Highway networks Figure 1 as the paper ran it: a random search per depth and type, best run and top-10 mean.

    python reproduce/highway_fig1.py                   # train (or continue) 20 settings per depth and type
    python reproduce/highway_fig1.py --time-limit 120  # stop after 2 hours; the same command continues
    python reproduce/highway_fig1.py --settings 40     # 20 more per depth and type (the first 20 are kept)
    python reproduce/highway_fig1.py --collect-only    # figure and results.json from what has finished
    python reproduce/highway_fig1.py --project         # measure grouped steps, print the search's CPU cost
    python reproduce/highway_fig1.py --smoke /tmp/hw   # the whole pipeline on 600 images, 2 epochs, in /tmp/hw

Srivastava et al., "Training Very Deep Networks", Sec. 3.1: plain (71 units) and highway (50 blocks)
fully-connected nets of 10, 20, 50 and 100 layers on MNIST (a first plain layer, then 9/19/49/99
plain or highway layers, then softmax); "a random search of 100 runs for both plain and highway
networks" over the initial learning rate, momentum, exponential lr decay factor and activation
(ReLU or tanh), and for highway nets the transform gate bias (-1 to -10). Figure 1 shows the best
run's training loss per depth (left) and the mean of the top 10 of 100 settings (right).

Each (type, depth) block of 20 settings is one sweep file, reproduce/highway_fig1/<type>-<layers>-partK.arch,
sampled once from a fixed seed and committed; `archlang train FILE --grouped` trains its ReLU settings
as one grouped process and its tanh settings as another (the activation changes the network).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import jobs as jobs_module
import stats
from jobs import ROOT, Job, SpecFile, merge_results, parser, run_unless_collecting

from archlang.runs import RunFolder, is_done
from archlang.runs.sweep import read_manifest

PAPER = "Highway networks (Srivastava et al.)"
LAYERS = (10, 20, 50, 100)
KINDS = ("plain", "highway")
WIDTH = {"plain": 71, "highway": 50}  # Sec. 3.1: ~5,000 parameters per layer either way
BLOCK = 20  # settings per sweep file: --settings 40 adds files, it never changes the first ones
SEARCH_SEED = 1507  # fixed: the sampled settings are part of the committed specs
SPECS = ROOT / "reproduce" / "highway_fig1"
FIGURE = ROOT / "reproduce" / "highway_fig1.png"
# The paper's text does not give the number of epochs (its Figure 1 axis is not in our text copy).
# At 10 epochs the 20-setting search costs about 2.2 CPU h, 1.1 h on this 2-core CPU (--project), so 10 it is.
EPOCHS = 10
# Flush denormal floats to zero: without batch norm, a deep net's gradients can decay below 1.2e-38, where
# x86 arithmetic is many times slower (a 99-layer plain ReLU net at torch's default init: 3.6x the step's
# CPU time; the search's own init and settings: 1.0-1.4x after 200 steps, see the commit adding it).
FLAGS = ("--flush-denormal",)


def sample(kind: str, layers: int, count: int) -> list[dict[str, float | str]]:
    """The first `count` settings of this type and depth (a prefix of one fixed random sequence)."""
    rng = random.Random(f"{SEARCH_SEED}-{kind}-{layers}")
    settings = []
    for _ in range(count):
        s: dict[str, float | str] = {
            # assumed range: the paper searched the initial lr without printing its range; log-uniform 1e-3..1
            "lr": float(f"{10 ** rng.uniform(-3, 0):.3g}"),
            # assumed range: momentum was searched (range not printed); 1 - 10^U(-2, -0.3), i.e. 0.5..0.99
            "m": float(f"{1 - 10 ** rng.uniform(-2, -0.3):.3g}"),
            # assumed range: the exponential decay factor was searched (range not printed); per epoch, 0.8..1
            "g": float(f"{rng.uniform(0.8, 1.0):.3g}"),
            # stated: ReLU or tanh
            "a": rng.choice(("relu", "tanh")),
        }
        b = rng.uniform(-10, -1)  # stated: the transform gate bias is between -1 and -10 (drawn for plain too,
        if kind == "highway":     # so that both types' other values come from the same sequence)
            s["b"] = float(f"{b:.3g}")
        settings.append(s)
    return settings


def spec_text(kind: str, layers: int, settings: list[dict[str, float | str]]) -> str:
    names = ["lr", "m", "g", "a"] + (["b"] if kind == "highway" else [])

    def value(v: float | str) -> str:
        return f'"{v}"' if isinstance(v, str) else repr(v)

    rows = ",\n    ".join("(" + ", ".join(value(s[n]) for n in names) + ")" for s in settings)
    net = (f"mlp(depth={layers - 1}, width={WIDTH[kind]}, block={kind}, bn=false, act=a"
           + (", bias_init=b)" if kind == "highway" else ")"))
    return (f"# Highway Figure 1 random search: {kind}, {layers} layers ({len(settings)} settings, written by\n"
            f"# reproduce/highway_fig1.py from seed {SEARCH_SEED}). SGD with plain momentum (Sec. 3: \"SGD with\n"
            "# momentum\"), exponential lr decay per epoch (Sec. 3); no weight decay (none is mentioned).\n"
            f"let ({', '.join(names)}) = {{\n    {rows}}}\n{net}\n"
            "train(lr=lr, momentum=m, gamma=g, schedule=\"exponential\", nesterov=false, weight_decay=0)\n")


def spec_files(count: int) -> dict[tuple[str, int], list[SpecFile]]:
    """The sweep files of the first `count` settings per type and depth (named, not written: see main)."""
    files: dict[tuple[str, int], list[SpecFile]] = {}
    for kind in KINDS:
        for layers in LAYERS:
            settings = sample(kind, layers, count)
            files[(kind, layers)] = [SpecFile(SPECS / f"{kind}-{layers}-part{part}.arch",
                                              spec_text(kind, layers, settings[start:start + BLOCK]),
                                              f"seed {SEARCH_SEED}") for part, start in enumerate(range(0, count, BLOCK), 1)]
    return files


def jobs(count: int, epochs: int, extra: tuple[str, ...] = ()) -> dict[tuple[str, int], list[Job]]:
    """One grouped-sweep job per sweep file (checked against the seed if it exists); deepest first, so the
    longest start early."""
    found: dict[tuple[str, int], list[Job]] = {}
    for (kind, layers), files in sorted(spec_files(count).items(), key=lambda kv: -kv[0][1]):
        found[(kind, layers)] = [Job(f"highway-fig1/{f.path.stem}", str(f.check().relative_to(ROOT)), "highway-mnist",
                                     ["--epochs", str(epochs), *FLAGS, *extra], grouped_sweep=True) for f in files]
    return found


def curves(group: list[Job]) -> list[tuple[str, list[float], str, int]]:
    """(point, training loss per epoch, status, the epochs its recorded recipe trains) of every point of these
    sweeps that has ended."""
    found = []
    for job in group:
        manifest = read_manifest(jobs_module.RUNS / job.name)
        for p in manifest.points if manifest else []:
            run = RunFolder(jobs_module.RUNS / job.name / p.name)
            if is_done(run.status()):
                found.append((p.name, [r.train_loss for r in run.read_metrics()], run.status(),
                              int(run.read_recipe()["epochs"])))
    return found


def ranked(found: list[tuple[str, list[float], str, int]]) -> list[tuple[str, list[float]]]:
    """Settings that trained every epoch their recipe records, lowest final training loss first (a diverged one
    never ranks). The collecting command's --epochs plays no part: another one must not drop every run."""
    full = [(name, losses) for name, losses, status, epochs in found if status == "finished" and len(losses) == epochs
            and math.isfinite(losses[-1])]
    longest = max((len(losses) for _, losses in full), default=0)  # one length per curve of the top-10 mean
    return sorted([item for item in full if len(item[1]) == longest], key=lambda item: item[1][-1])


def plot(best: dict[tuple[str, int], list[float]], top10: dict[tuple[str, int], list[float]], path: Path) -> None:
    from archlang.plotting import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = dict(zip(LAYERS, ("tab:blue", "tab:green", "tab:orange", "tab:red")))
    for ax, (title, data) in zip(axes, (("best setting", best), ("mean of the top 10 settings", top10))):
        for (kind, layers), losses in sorted(data.items()):
            ax.semilogy(range(1, len(losses) + 1), losses, color=colours[layers],
                        linestyle="-" if kind == "highway" else "--", marker="o", markersize=2,
                        label=f"{kind} {layers}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("mean training cross-entropy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results(all_jobs: dict[tuple[str, int], list[Job]], figure: Path = FIGURE) -> list[dict]:
    """Per type and depth: the best setting's final training loss, and the mean +- std of the top 10, over the
    epochs the runs were trained for."""
    entries, best, top10 = [], {}, {}
    for (kind, layers), group in sorted(all_jobs.items()):
        found = curves(group)
        order = ranked(found)
        if not order:
            continue
        epochs = len(order[0][1])
        finals = [losses[-1] for _, losses in order]
        top = order[:10]
        best[(kind, layers)] = order[0][1]
        top10[(kind, layers)] = [stats.mean([c[i] for _, c in top]) for i in range(epochs)]
        base = {"paper": PAPER, "table": "Figure 1", "spec": group[0].spec, "epochs": epochs,
                "settings": len(found), "trained": len(order), "diverged": sum(s == "diverged" for _, _, s, _ in found),
                "scale": f"full MNIST, {epochs} epochs, {len(found)} random settings (paper: 100, epochs not stated)",
                "command": " && ".join(j.command("../shared/data") for j in group)}
        paper = "< 1e-4 (curves only)" if kind == "plain" and layers <= 20 else None
        entries.append({**base, "metric": f"final training loss, best setting, {kind}, {layers} layers",
                        "paper_value": paper, "ours": float(f"{finals[0]:.3g}"), "best_setting": order[0][0]})
        entries.append({**base, "metric": f"final training loss, mean of the top 10 settings, {kind}, {layers} layers",
                        "paper_value": None, "ours": float(f"{stats.mean(finals[:10]):.3g}"),
                        "mean": stats.mean(finals[:10]), "std": stats.sample_std(finals[:10]), "values": finals[:10]})
    if best:
        plot(best, top10, figure)
    return entries


def _step_seconds(networks: list, recipes: list, steps: int) -> tuple[float, float]:
    """CPU seconds of one grouped training step of these copies (each built, initialised and stepped as its
    run is), and of one evaluation batch of 1000."""
    import time

    import torch

    from archlang.grouped import grouped_loss
    from archlang.train.grouped_run import build_group

    model, optimizer = build_group(networks, recipes)
    batch = recipes[0].batch_size
    x, y = torch.rand(len(networks), batch, 1, 28, 28), torch.randint(0, 10, (len(networks), batch))
    for i in range(steps + 2):  # two steps to warm up
        if i == 2:
            start = time.process_time()
        optimizer.zero_grad()
        grouped_loss(model(x), y).sum().backward()
        optimizer.step()
    step = (time.process_time() - start) / steps
    with torch.no_grad():
        model.eval()
        start = time.process_time()
        model(torch.rand(len(networks), recipes[0].eval_batch_size, 1, 28, 28))
    return step, time.process_time() - start


def project(all_jobs: dict[tuple[str, int], list[Job]], count: int, epochs: int, steps: int = 5) -> None:
    """Time each group's grouped step (one thread, CPU time, FLAGS as the search trains) and print the search's
    projected cost."""
    from archlang.compiler import compile_all
    from archlang.errors import Source
    from archlang.launch.groups import group_points
    from archlang.launch.points import sweep_points
    from archlang.train.options import TrainOptions, configure_threads
    from archlang.train.plan import resolve_recipe

    configure_threads(TrainOptions(threads=1, flush_denormal="--flush-denormal" in FLAGS))
    texts = {str(f.path.relative_to(ROOT)): f.text for files in spec_files(count).values() for f in files}
    total = 0.0
    for (kind, layers), group in sorted(all_jobs.items()):
        for job in group:
            source = Source(texts[job.spec], job.spec)  # the seed's text: a missing file is not written to time it
            compiled = compile_all(source)
            for points in group_points(source, sweep_points(source), job.recipe, {"epochs": epochs}):
                # Each point's recipe as its training resolves it (its train(...) clause on job.recipe).
                recipes = [resolve_recipe(compiled[p.index], job.recipe, {"epochs": epochs}).recipe for p in points]
                step, evaluation = _step_seconds([compiled[p.index].network for p in points], recipes, steps)
                epoch = 60000 / recipes[0].batch_size * step + 10000 / recipes[0].eval_batch_size * evaluation
                total += epoch * epochs
                act = dict(points[0].values).get("a", "")
                print(f"{job.name} {act}: {len(points)} copies, {step * 1e3:.0f} ms a step, {epoch:.0f} s an epoch (CPU)")
    print(f"projected: {total / 3600:.1f} CPU hours for {epochs} epochs, about {total / 7200:.1f} h on 2 cores")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--settings", type=int, default=BLOCK, help=f"random settings per depth and type, a multiple "
                   f"of {BLOCK} (default {BLOCK}; the paper: 100)")
    p.add_argument("--epochs", type=jobs_module.positive_int, default=EPOCHS, help=f"epochs per setting (default {EPOCHS})")
    p.add_argument("--project", action="store_true", help="time a few grouped steps per depth and type and "
                   "print the search's projected CPU cost; trains nothing")
    p.add_argument("--smoke", metavar="DIR", help="train 2 epochs on 600 images with run folders in DIR; "
                   "results.json and the committed figure are left alone")
    args = p.parse_args(argv)
    if args.settings < BLOCK or args.settings % BLOCK:
        raise SystemExit(f"--settings must be a multiple of {BLOCK}")
    if args.smoke:
        jobs_module.RUNS = Path(args.smoke).resolve()  # every Job reads its folders from here
        args.epochs = 2
    all_jobs = jobs(args.settings, args.epochs, ("--subset", "600", "--eval-subset", "1000") if args.smoke else ())
    if args.project:
        project(all_jobs, args.settings, args.epochs)
        return
    if not args.collect_only:  # only training writes the sweep files (committed; a new --settings adds some)
        for files in spec_files(args.settings).values():
            for f in files:
                f.write()
    wall = run_unless_collecting([j for group in all_jobs.values() for j in group], args)
    if wall is not None:
        print(f"wall time this invocation: {wall / 60:.1f} min")
    if args.smoke:
        entries = results(all_jobs, jobs_module.RUNS / "highway_fig1.png")
        print(f"{len(entries)} results (smoke: not merged); figure {jobs_module.RUNS / 'highway_fig1.png'}")
        return
    entries = results(all_jobs)
    merge_results(entries, (PAPER, "Figure 1"))
    print(f"{len(entries)} results; figure {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
