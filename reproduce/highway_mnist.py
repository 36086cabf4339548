"""Highway networks section 3.1 / Figure 1: plain vs highway FC nets of 10, 20, 50 and 100 layers on MNIST.

    python reproduce/highway_mnist.py [--epochs 20]

Every net has a first plain layer, then 9/19/49/99 plain layers of 71 units or highway layers of 50
blocks (about 5,000 parameters per layer either way), then softmax; no batchnorm (paper sec. 3.1).
Recipe highway-mnist (the authors' published MNIST solver values; see the YAML); gate bias -4. The figure
(reproduce/highway_mnist.png) is the training loss per epoch; results.json gets the final training loss
of each net under "Figure 1, one fixed setting". reproduce/highway_fig1.py runs the paper's random search.
"""

from __future__ import annotations

from jobs import ROOT, Job, merge_results, parser, plot_loss_panels, run_unless_collecting, summary

PAPER = "Highway networks (Srivastava et al.)"
TABLE = "Figure 1, one fixed setting"  # beside highway_fig1.py's "Figure 1" (the random search)
# The paper searched the gate bias in [-10, -1] per network and does not print the winners. With
# the family default -2, each of 99 layers carries only 88% of its input at initialisation and the
# signal of a 100-layer net shrinks ~1e4-fold (measured: std 0.30 -> 3.8e-5), so it never trains;
# -4 (the value the Gated ResNet paper quotes from Srivastava et al.) keeps 98% per layer.
BIAS = -4
LAYERS = (10, 20, 50, 100)


def jobs(epochs: int) -> list[Job]:
    out = []
    for layers in reversed(LAYERS):
        out.append(Job(f"highway-mnist/highway-{layers}", f"mlp(depth={layers - 1}, width=50, block=highway, bn=false, bias_init={BIAS})",
                       "highway-mnist", ["--epochs", str(epochs)]))
        out.append(Job(f"highway-mnist/plain-{layers}", f"mlp(depth={layers - 1}, width=71, block=plain, bn=false)",
                       "highway-mnist", ["--epochs", str(epochs)]))
    return out


def plot(all_jobs: list[Job]) -> None:
    panels: dict[str, list[tuple[str, Job]]] = {f"{layers} layers": [] for layers in LAYERS}
    for job in all_jobs:
        kind, n = job.name.split("/")[1].rsplit("-", 1)
        panels[f"{n} layers"].append((kind, job))
    plot_loss_panels(panels, ROOT / "reproduce" / "highway_mnist.png", "mean training cross-entropy")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=20, help="epochs per net (the CPU budget; the paper's are longer)")
    args = p.parse_args()
    all_jobs = jobs(args.epochs)
    wall = run_unless_collecting(all_jobs, args)
    if wall is not None:
        print(f"wall time: {wall / 60:.1f} min")
    entries = []
    for job in all_jobs:
        s = summary(job)
        if not s or s["status"] != "finished":
            continue
        kind, n = job.name.split("/")[1].rsplit("-", 1)
        entries.append({
            "paper": PAPER, "table": TABLE, "spec": job.spec,
            "metric": f"final training loss, {kind}, {n} layers",
            "paper_value": "< 1e-4 (plain 10 and 20 layers; curves only)" if kind == "plain" and int(n) <= 20 else None,
            "ours": float(f"{s['final_train_loss']:.3g}"), "epochs": s["epochs_done"],
            "scale": f"full MNIST training set, {s['epochs_done']} epochs (paper: longer, best of a 100-run search)",
            "command": job.command("../shared/data"), "seconds": s["seconds"]})
    merge_results(entries, (PAPER, TABLE))
    plot(all_jobs)
    print(f"{len(entries)} results; figure reproduce/highway_mnist.png")


if __name__ == "__main__":
    main()
