"""The papers' full-scale CIFAR runs, for a machine with a GPU: run as is, it prints time per epoch.

    python reproduce/full_scale.py --data-dir DIR [--only wrn-28-10] [--epochs N] [--bf16]

WRN-28-10 (200 epochs, wrn-cifar recipe, dropout 0.3 variant too), Wide Gated ResNet 28-10
(gated-cifar-wrn) and DiracNet-34-2 (dirac-cifar): each an ordinary `archlang train` run in
reproduce/runs/full-scale/, resumable with the same command. Every epoch logs its seconds; at the
end the script prints seconds per epoch and the projected time of the whole schedule.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from archlang.runs import RunFolder

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 391  # 50,000 CIFAR training images in batches of 128
NETS = {
    "wrn-28-10": ("wrn(depth=28, k=10)", "wrn-cifar"),
    "wrn-28-10-dropout": ("wrn(depth=28, k=10, dropout=0.3)", "wrn-cifar"),
    "gated-wrn-28-10": ("wrn(depth=28, k=10, block=gated(B(3,3)))", "gated-cifar-wrn"),
    "diracnet-34-2": ("diracnet(depth=34, k=2)", "dirac-cifar"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="CIFAR-10 (torchvision layout, ImageFolder tree or zip); default: download")
    p.add_argument("--only", choices=sorted(NETS), action="append", help="run only these nets")
    p.add_argument("--epochs", type=int, help="stop after N epochs (resume later with the same command)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (the papers used fp32)")
    args = p.parse_args()
    runs = ROOT / "reproduce" / "runs" / "full-scale"
    for name in args.only or list(NETS):
        spec, recipe = NETS[name]
        folder = runs / name
        argv = [sys.executable, "-m", "archlang", "train", spec, "--recipe", recipe, "--device", args.device,
                "--channels-last", "--no-progress"]
        argv += ["--resume", str(folder)] if RunFolder(folder).is_run() else ["--out", str(runs), "--name", name]
        argv += ["--data-dir", args.data_dir] if args.data_dir else []
        argv += ["--bf16"] if args.bf16 else []
        # Stopping after N epochs (not changing the recipe's 200) keeps the run resumable to the end.
        argv += ["--max-steps", str(args.epochs * STEPS_PER_EPOCH)] if args.epochs else []
        print("+", " ".join(argv), flush=True)
        code = subprocess.call(argv, cwd=ROOT)
        history = RunFolder(folder).read_metrics()
        if history:
            per_epoch = sum(h.seconds for h in history) / len(history)
            print(f"{name}: {len(history)} epochs, {per_epoch:.1f} s per epoch, whole schedule about "
                  f"{per_epoch * 200 / 3600:.1f} h; last test error {history[-1].test_error:.2f}%", flush=True)
        if code != 0:
            sys.exit(code)


if __name__ == "__main__":
    main()
