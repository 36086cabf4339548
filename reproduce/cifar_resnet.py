"""Gated ResNet CIFAR-10, "Resnet 5": pre-activation ResNet-32 (n = 5), gated, and gated with k decay.

    python reproduce/cifar_resnet.py [--epochs 10] [--time-limit MINUTES]

Later version, Table 3: 7.16% (original), 6.67% (gated), 7.04% (gated, k decay); recipe
gated-cifar-resnet (SGD Nesterov, lr 0.1 /10 at 50% and 75% of the epochs, weight decay 1e-4,
mean subtraction, crops + flips, batch 128). On 2 CPU cores an epoch of ResNet-32 took 767-956 s
per run (two side by side, one thread each), so the schedule is compressed to --epochs (its milestones are fractions of
the epochs) and the runs span sessions: each invocation checkpoints and stops at --time-limit,
and the next one resumes. Runs not finished yet are listed with their epochs done.
"""

from __future__ import annotations

from jobs import Job, merge_results, parser, run_unless_collecting, summary

PAPER = "Gated ResNet (Savarese et al., later version)"
TABLE = "Table 3 (CIFAR-10, Resnet 5)"
NETS = (
    ("resnet-32", "preact_resnet(depth=32)", [], "original", 7.16),
    ("gated-resnet-32", "gated(preact_resnet(depth=32))", [], "gated", 6.67),
    ("gated-resnet-32-kdecay", "gated(preact_resnet(depth=32))", ["--k-decay"], "gated, k decay", 7.04),
)


def jobs(epochs: int) -> list[Job]:
    return [Job(f"cifar-resnet/{name}", spec, "gated-cifar-resnet", ["--epochs", str(epochs), "--channels-last", *extra])
            for name, spec, extra, *_ in NETS]


def results(all_jobs: list[Job]) -> list[dict]:
    entries = []
    for job, (_, spec, _, label, paper_value) in zip(all_jobs, NETS):
        s = summary(job)
        if not s or not s["epochs_done"]:
            continue
        state = "" if s["status"] == "finished" else f"; stopped at {s['epochs_done']} of {s['epochs']} epochs"
        entries.append({
            "paper": PAPER, "table": TABLE, "spec": spec, "metric": f"test error (%), {label}",
            "paper_value": paper_value, "ours": round(s["final_test_error"], 2), "epochs": s["epochs_done"],
            "scale": f"{s['epochs']} of 200 epochs (lr steps at 50%/75% of them), all 50,000 training images "
                     f"(JPEG CIFAR-10), CPU fp32, 1 thread{state}",
            "command": job.command("../shared/data"), "seconds": s["seconds"], "status": s["status"]})
    return entries


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=10, help="epochs per net (the paper: 200)")
    args = p.parse_args()
    all_jobs = jobs(args.epochs)
    run_unless_collecting(all_jobs, args)
    entries = results(all_jobs)
    merge_results(entries, (PAPER, TABLE))
    print(f"{len(entries)} results in reproduce/results.json")


if __name__ == "__main__":
    main()
