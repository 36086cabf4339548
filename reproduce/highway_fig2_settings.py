"""Highway networks Figures 2-4 with the paper's gate bias -2 under each tanh setting of the Figure 1 search.

    python reproduce/highway_fig2_settings.py [--time-limit MINUTES]   # train (resumable), then analyse; merged
    python reproduce/highway_fig2_settings.py --collect-only           # only analyse the finished runs
    python reproduce/highway_fig2_settings.py --epochs 1 --subset 600  # a smoke test: its own folder; not merged

highway_fig2_net.py trains the paper's Figure 2 net (bias -2) under one setting, the lr, momentum and decay of
our search's best depth-50 tanh run, and its lesions find the work done by the first 2-4 layers, where the
paper's Figure 4 has about 15. The paper's net was the best run of its own search, whose lr, momentum and decay
it does not print. Does the setting decide where the work ends? This script trains the same net under each of
the 9 tanh settings of our depth-50 search (reproduce/highway_fig1/highway-50-part1.arch), bias -2 for all, as
one grouped process (`archlang train SWEEP --grouped`, the recipe's seed 0), and analyses each as highway_figs
does: the results.json table "Figures 2-4 (gate bias -2, 9 settings)", three rows per setting, and
reproduce/highway_fig4_settings.png (every setting's Figure 4 in one panel). Epochs: 50 (assumed; the paper
gives none): 8 of the 9 settings decay the lr by 0.931 or faster per epoch, to under 3% of the initial lr by
epoch 50; the ninth (0.985) is highway_fig2_net's setting, trained there for 100 epochs.
"""

from __future__ import annotations

import argparse
import sys

import highway_fig1
import highway_figs
from jobs import (
    ROOT,
    Job,
    SpecFile,
    analysed_and_merged,
    not_done,
    parser,
    positive_int,
    run_unless_collecting,
    shortened_name,
)

from archlang.runs import RunFolder

TABLE = "Figures 2-4 (gate bias -2, 9 settings)"
NAME = "highway-figs/tanh-50-bias-2-settings"
SPEC = ROOT / "reproduce" / "highway_figs" / "tanh-50-bias-2-settings.arch"
RECIPE = "highway-mnist"
EPOCHS = 50
LAYERS = 50
FIGURE = ROOT / "reproduce" / "highway_fig4_settings.png"
KEPT = ("training error (%), not lesioned", "fraction of layers whose lesion adds", "end of the early layers")


def settings() -> list[dict[str, float | str]]:
    """The tanh settings of the search's first sweep file at depth 50, in its order."""
    return [s for s in highway_fig1.sample("highway", LAYERS, highway_fig1.BLOCK) if s["a"] == "tanh"]


def spec_file() -> SpecFile:
    rows = ",\n    ".join(f"({s['lr']!r}, {s['m']!r}, {s['g']!r})" for s in settings())
    text = ("# Highway Figures 2-4 under every tanh setting of the Figure 1 search at depth 50\n"
            "# (reproduce/highway_fig1/highway-50-part1.arch: lr, momentum, per-epoch decay), each with the\n"
            "# Figure 2 caption's gate bias -2; written by reproduce/highway_fig2_settings.py.\n"
            f"let (lr, m, g) = {{\n    {rows}}}\n"
            f'mlp(depth={LAYERS - 1}, width=50, block=highway, bn=false, act="tanh", bias_init=-2)\n'
            'train(lr=lr, momentum=m, gamma=g, schedule="exponential", nesterov=false, weight_decay=0)\n')
    return SpecFile(SPEC, text, f"highway_fig1.sample(seed {highway_fig1.SEARCH_SEED})")


def job(epochs: int = EPOCHS, subset: int | None = None) -> Job:
    """The one grouped sweep; a shortened one (a smoke test) gets its own folder, so it never blocks the real one."""
    flags = ["--epochs", str(epochs), *highway_fig1.FLAGS, *(["--subset", str(subset)] if subset else [])]
    return Job(shortened_name(NAME, epochs, subset, EPOCHS), str(highway_figs.shown(spec_file().check())), RECIPE,
               flags, grouped_sweep=True)


def label(run: RunFolder) -> str:
    recipe = run.read_recipe()
    return f"lr {recipe['lr']:.3g}, momentum {recipe['momentum']:.3g}, decay {recipe['gamma']:.3g}"


def setting_rows(found: highway_figs.Analysis, name: str, best: bool, command: str) -> list[dict]:
    """KEPT's rows of highway_figs for one setting, the setting named in each metric; the per-layer errors
    go with the row of where the early layers end."""
    selection = f"bias -2 under the search's tanh setting {name}" + (
        " (the lowest training error of the settings: footnote 3's best)" if best else "")
    base = {**highway_figs.base_row(found, selection, command), "table": TABLE, "setting": name, "best_setting": best}
    rows = [r for r in highway_figs.rows(found, base) if r["metric"].startswith(KEPT)]
    for r in rows:
        r["metric"] = f"{r['metric']}, {name}"
        if r["metric"].startswith(KEPT[2]):
            r.update(per_layer_error=[x.error for x in found.lesions], baseline=found.baseline)
    return rows


def analyse(sweep: Job, args: argparse.Namespace) -> list[dict]:
    """Every setting's rows and the one-panel Figure 4 of all; merged only for the full runs."""
    from archlang.analysis.plots import plot_lesion_curves

    highway_figs.threads(args.threads)
    finished = [run for run in sweep.runs if run.status() == "finished"]  # a diverged net has no weights to lesion
    diverged = [label(run) for run in sweep.runs if run.status() != "finished"]
    found = {label(run): (run, highway_figs.analyse(run.path, args.data_dir, args.subset)) for run in finished}
    best = min(found, key=lambda name: found[name][1].baseline)  # min keeps the first of equals: the file's order
    full = args.epochs == EPOCHS and args.subset is None
    figure = FIGURE if full else found[best][0].analysis_dir() / FIGURE.name
    command = f"{sweep.command('../shared/data')}; python reproduce/highway_fig2_settings.py --collect-only"
    entries = [r for name, (_, f) in found.items() for r in setting_rows(f, name, name == best, command)]
    entries.append({**{k: entries[0][k] for k in ("paper", "table", "spec", "epochs", "scale", "command")},
                    "metric": f"settings that diverged (of {len(sweep.runs)})", "paper_value": None,
                    "ours": len(diverged), "settings": diverged})
    images = next(iter(found.values()))[1].images
    plot_lesion_curves({name: (f.baseline, f.lesions) for name, (_, f) in found.items()}, figure,
                       f"50-layer tanh highway, gate bias -2, {args.epochs} epochs, {images} training images")
    print(f"{'setting':44} {'train err %':>11} {'early end':>9} {'layers <= 1 pt':>14}")
    for name, (_, f) in found.items():
        numbers = highway_figs.lesion_numbers(f.baseline, f.lesions)
        idle = 1 - len(numbers["used"]) / len(f.lesions)
        print(f"{name + (' *' if name == best else ''):44} {f.baseline:11.4g} {numbers['early_end']:9d} {idle:14.2f}")
    print(f"diverged: {', '.join(diverged) or 'none'}")
    print(f"(* footnote 3's best: lowest training error; paper: early end about {highway_figs.PAPER_EARLY_END}, "
          f"about 60% of layers at most {highway_figs.MATTERS:g} point) figure: {figure}")
    return entries if full else []


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=positive_int, default=EPOCHS, help=f"shorten the {EPOCHS} epochs (a smoke test: "
                   "its own folder, never merged)")
    p.add_argument("--subset", type=positive_int, help="train and analyse on the first N training images (a smoke "
                   "test: never merged)")
    args = p.parse_args(argv)
    if not args.collect_only:
        spec_file().write()
    sweep = job(args.epochs, args.subset)
    run_unless_collecting([sweep], args)
    waiting = not_done([sweep], args, done=("finished", "diverged"))  # diverged: every setting ended, some diverged
    if waiting is not None:
        return waiting
    return analysed_and_merged(lambda: analyse(sweep, args), (highway_figs.PAPER, TABLE))

if __name__ == "__main__":
    sys.exit(main())
