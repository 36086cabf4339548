"""Highway networks Figures 2-4 on the paper's own Figure 2 net: the 50-layer tanh highway net with gate bias -2.

    python reproduce/highway_fig2_net.py [--time-limit MINUTES]  # train (resumable), then analyse; merged
    python reproduce/highway_fig2_net.py --collect-only          # only analyse the finished run
    python reproduce/highway_fig2_net.py --epochs 1 --subset 600 # a smoke test: its own folder; not merged

highway_figs.py analyses the best depth-50 tanh run of our Figure 1 search, as footnote 3 defines the net;
that run's gate bias, -7.08, kept every gate shut (mean T 0.0011), so its figures show nothing of the
paper's. The paper's caption fixes the MNIST net's bias: "initialized to -2". This script trains that net
(reproduce/highway_figs/tanh-50-bias-2.arch: the search's best tanh-50 lr, momentum and decay, bias -2)
and makes the same figures and rows from it, as highway_fig{2,3,4}_bias2.png and the results.json table
"Figures 2-4 (gate bias -2)". Epochs: 100 (assumed: the paper gives none; at the search's 10 this net's
training error was still 2.3%, where Figure 4's unlesioned line is near 0). One run, seed 0.
"""

from __future__ import annotations

import argparse
import sys

import highway_fig1
import highway_figs
from jobs import RESULTS, ROOT, Job, merge_results, parser, positive_int, run_unless_collecting

from archlang.errors import ArchlangError

TABLE = "Figures 2-4 (gate bias -2)"
SPEC = "reproduce/highway_figs/tanh-50-bias-2.arch"
RECIPE = "highway-mnist"
EPOCHS = 100
FIGURES = {n: ROOT / "reproduce" / f"highway_fig{n}_bias2.png" for n in highway_figs.FIGURES}


def job(epochs: int = EPOCHS, subset: int | None = None) -> Job:
    """The run; a shortened one (a smoke test) gets its own folder, so it never blocks the real one."""
    name = "highway-figs/tanh-50-bias-2" + (f"-e{epochs}" if epochs != EPOCHS else "") + (f"-n{subset}" if subset else "")
    extra = ["--epochs", str(epochs), *highway_fig1.FLAGS, *(["--subset", str(subset)] if subset else [])]
    return Job(name, SPEC, RECIPE, extra)


def analyse(run: Job, args: argparse.Namespace) -> list[dict]:
    """Figures 2-4's figures and rows of the finished run: the committed ones only for the full run."""
    path = highway_figs.finished_run(str(run.folder)).path
    highway_figs.threads(args.threads)
    full = args.epochs == EPOCHS and args.subset is None
    figures = FIGURES if full else {n: run.run.analysis_dir() / f"highway_fig{n}.png" for n in FIGURES}
    found = highway_figs.analyse(path, args.data_dir, args.subset)
    selection = ("the paper's Figure 2 bias (-2) with the Figure 1 search's best depth-50 tanh lr, momentum and decay"
                 if full else "a shortened run (a smoke test): not the paper's net")
    command = "; ".join([run.command("../shared/data"), "python reproduce/highway_fig2_net.py --collect-only"])
    base = {**highway_figs.base_row(found, selection, command), "table": TABLE}
    entries = highway_figs.rows(found, base)
    highway_figs.draw(found, figures)
    highway_figs.show(found, selection, entries, figures)
    return entries if full else []


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=positive_int, default=EPOCHS, help=f"shorten the {EPOCHS} epochs (a smoke test: "
                   "its own folder, never merged)")
    p.add_argument("--subset", type=positive_int, help="train and analyse on the first N training images (a smoke "
                   "test: never merged)")
    args = p.parse_args(argv)
    run = job(args.epochs, args.subset)
    run_unless_collecting([run], args)
    status = run.status()
    if status != "finished":
        stopped = status == "stopped" and args.time_limit and not args.collect_only
        print(f"{run.name} is {status}" + (": run this script again to continue it" if stopped else ""), file=sys.stderr)
        return 0 if stopped else 2
    try:
        entries = analyse(run, args)
    except ArchlangError as err:
        print(err.render(), file=sys.stderr)
        return 2
    if entries:
        merge_results(entries, (highway_figs.PAPER, TABLE))
        print(f"{len(entries)} results merged into {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
