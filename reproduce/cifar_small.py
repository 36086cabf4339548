"""CIFAR-10 at a scale that fits 2 CPU cores: WRN-16-1, its gated version, DiracNet-10-1 and -16-1.

    python reproduce/cifar_small.py [--epochs 5] [--subset N]

Full networks and recipes (wrn-cifar, gated-cifar-wrn, dirac-cifar), but only a few epochs
(the papers train 200): the numbers show the direction, not the papers' accuracies. Uses the
JPEG CIFAR-10 zip (--data-dir ../shared/data finds cifar10-jpeg.zip).
"""

from __future__ import annotations

from jobs import Job, merge_results, parser, run_all, summary

NETS = [
    ("wrn-16-1", "wrn(depth=16, k=1)", "wrn-cifar", "WRN (Zagoruyko & Komodakis)", "CIFAR-10 small-scale check", None),
    ("gated-wrn-16-1", "wrn(depth=16, k=1, block=gated(B(3,3)))", "gated-cifar-wrn",
     "Gated ResNet (Savarese et al., later version)", "CIFAR-10 small-scale check", None),
    ("diracnet-10-1", "diracnet(depth=10, k=1)", "dirac-cifar", "DiracNets (Zagoruyko & Komodakis)", "CIFAR-10 small-scale check", None),
    ("diracnet-16-1", "diracnet(depth=16, k=1)", "dirac-cifar", "DiracNets (Zagoruyko & Komodakis)", "CIFAR-10 small-scale check", None),
]


def jobs(epochs: int, subset: int | None) -> list[Job]:
    extra = ["--epochs", str(epochs), "--channels-last"] + (["--subset", str(subset)] if subset else [])
    return [Job(f"cifar-small/{name}", spec, recipe, extra) for name, spec, recipe, *_ in NETS]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--subset", type=int, default=None)
    p.set_defaults(parallel=1, threads=2)
    args = p.parse_args()
    all_jobs = jobs(args.epochs, args.subset)
    if not args.collect_only:
        run_all(all_jobs, args.data_dir, args.parallel, args.threads, args.time_limit)
    by_table: dict[tuple[str, str], list[dict]] = {}
    for job, (name, spec, recipe, paper, table, paper_value) in zip(all_jobs, NETS):
        s = summary(job)
        if not s or s["status"] != "finished":
            continue
        images = s["train_images"]
        by_table.setdefault((paper, table), []).append({
            "paper": paper, "table": table, "spec": spec, "metric": f"CIFAR-10 test error (%), {name}",
            "paper_value": paper_value, "ours": round(s["final_test_error"], 2), "epochs": s["epochs_done"],
            "scale": f"{s['epochs_done']} of {200} epochs, {images} training images (JPEG CIFAR-10), CPU fp32",
            "command": job.command("../shared/data"), "seconds": s["seconds"]})
    for key, entries in by_table.items():
        merge_results(entries, key)


if __name__ == "__main__":
    main()
