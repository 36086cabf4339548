"""Gated ResNet (later version) Tables 1 and 2: plain, residual and gated FC nets on MNIST, d = 2..100.

    python reproduce/gated_mnist.py            # runs (or resumes) all 15, two side by side
    python reproduce/gated_mnist.py --collect-only

Recipe gated-mnist: NAdam lr 0.002, batch 128, 100 epochs, pixels/255 (paper sec. 3.1).
"""

from __future__ import annotations

import json
import statistics

from jobs import ROOT, Job, merge_results, parser, plot_loss_panels, run_unless_collecting, summary

PAPER = "Gated ResNet (Savarese et al., later version)"
DEPTHS = (2, 10, 20, 50, 100)
# Table 1 test error (%) and Table 2 mean k, as printed.
TABLE1 = {"plain": (2.29, 2.22, 2.21, 60.37, 90.20), "residual": (2.20, 1.64, 1.61, 1.62, 1.50),
          "gated": (2.17, 1.60, 1.57, 1.48, 1.26)}
TABLE2 = (5.58, 2.54, 1.73, 1.04, 0.67)
BLOCKS = {"plain": "plain", "residual": "residual", "gated": "gated(residual)"}


KINDS = ("gated", "residual", "plain")
SEEDS = (1, 2, 3, 4)  # beside each cell's seed-0 run (the recipe's seed): five seeds per cell


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


def results(data_dir: str) -> list[dict]:
    entries = []
    for job in jobs():
        s = summary(job)
        if not s or s["status"] != "finished":
            continue
        kind, d = job.name.split("/")[1].rsplit("-d", 1)
        i = DEPTHS.index(int(d))
        scale = f"full scale: all 60,000 MNIST training images, {s['epochs']} epochs, 1 run (paper: 1 run)"
        base = {"paper": PAPER, "spec": job.spec, "epochs": s["epochs_done"], "scale": scale,
                "command": job.command("../shared/data"), "seconds": s["seconds"]}
        entries.append({**base, "table": "Table 1", "metric": f"test error (%), {kind}, d={d}",
                        "paper_value": TABLE1[kind][i], "ours": round(s["final_test_error"], 2)})
        if kind == "gated":
            entries.append({**base, "table": "Table 2", "metric": f"mean k, d={d}", "paper_value": TABLE2[i],
                            "ours": round(s["mean_k"], 2)})
    return entries


def plot(all_jobs: list[Job]) -> None:
    """Figure 4: training loss of plain, residual and gated nets, one panel per depth."""
    panels: dict[str, list[tuple[str, Job]]] = {f"d = {d}": [] for d in DEPTHS}
    for job in all_jobs:
        kind, d = job.name.split("/")[1].rsplit("-d", 1)
        panels[f"d = {d}"].append(({"gated": "GResNet"}.get(kind, kind), job))
    plot_loss_panels(panels, ROOT / "reproduce" / "gated_fig4.png", "training cross-entropy")


def projected_wall_s(all_jobs: list[Job], parallel: int) -> dict[str, float]:
    """All 15 runs back to back, `parallel` at a time, at each run's median and fastest epoch time.

    The run folders' summed seconds include whatever else shared the cores; the median epoch of
    each run is closer to its undisturbed speed, the fastest epoch a lower bound.
    """
    median = fastest = 0.0
    for job in all_jobs:
        seconds = [r.seconds for r in job.run.read_metrics()]
        if seconds:
            median += statistics.median(seconds) * len(seconds)
            fastest += min(seconds) * len(seconds)
    return {"median_epochs_s": round(median / parallel, 1), "fastest_epochs_s": round(fastest / parallel, 1)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS), choices=DEPTHS, help="cells to run")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="cells to run")
    p.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS),
                   help="seeds beside seed 0, trained together in one process per cell (none: seed 0 only)")
    args = p.parse_args()
    wall = run_unless_collecting(jobs(tuple(args.depths), tuple(args.kinds), tuple(args.seeds)), args)
    if wall is not None:
        print(f"wall time this invocation: {wall / 60:.1f} min ({args.parallel} runs side by side, "
              f"{args.threads} thread each)")
        timing = ROOT / "reproduce" / "timing.json"
        data = json.loads(timing.read_text()) if timing.is_file() else {}
        data.setdefault("gated_mnist_wall_s", []).append(round(wall, 1))
        timing.write_text(json.dumps(data, indent=2) + "\n")
    entries = results(args.data_dir)
    projection = projected_wall_s(jobs(), args.parallel)
    print(f"all 15 runs, {args.parallel} side by side: {projection['median_epochs_s'] / 3600:.2f} h at each run's "
          f"median epoch time, {projection['fastest_epochs_s'] / 3600:.2f} h at its fastest")
    plot(jobs())
    merge_results([e for e in entries if e["table"] == "Table 1"], (PAPER, "Table 1"))
    merge_results([e for e in entries if e["table"] == "Table 2"], (PAPER, "Table 2"))
    print(f"{len(entries)} results in reproduce/results.json")


if __name__ == "__main__":
    main()
