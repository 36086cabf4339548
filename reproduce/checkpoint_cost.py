"""Checkpoint cost as a share of an epoch, on this machine (issue 9's figure).

    python reproduce/checkpoint_cost.py                          # WRN-16-4, batch 128, 3 timed steps
    python reproduce/checkpoint_cost.py --spec "wrn(depth=28, k=10)" --batch 2 --steps 1

Times a few SGD steps (forward, backward, step) and the writing of a checkpoint of the same
state (model + momentum + progress) through the training's CheckpointWriter, synchronous as on
CPU; prints the checkpoint's size and its time as a ratio to an epoch of 391 steps (CIFAR, batch 128).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import archlang
from archlang.runs import Progress, Totals
from archlang.runs import rng as run_rng
from archlang.runs.checkpoint import list_checkpoints
from archlang.train.checkpointing import CheckpointWriter

STEPS_PER_EPOCH = 391


def _checkpoint_seconds(folder: Path, model, opt, sched, background: bool) -> tuple[list[float], int]:
    """The time training waits for each of 3 checkpoints written to `folder`, and the last one's size."""
    writer = CheckpointWriter(folder, background=background)
    times = []
    for i in range(3):
        progress = Progress(epoch=i, step=0, totals=Totals(), history=[], run_hash="0" * 64, rng=[run_rng.capture()])
        t = time.perf_counter()
        writer.save(model, opt, sched, progress)
        times.append(time.perf_counter() - t)
    writer.close()
    return times, list_checkpoints(folder)[-1].stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="wrn(depth=16, k=4)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--background", action="store_true", help="the GPU path: host copy + writer thread")
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = archlang.compile_spec(args.spec).build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    start = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    step = (time.perf_counter() - start) / args.steps
    with tempfile.TemporaryDirectory(prefix="checkpoint-cost-") as tmp:
        times, size = _checkpoint_seconds(Path(tmp), model, opt, sched, args.background)
    cost = statistics.median(times)
    epoch = step * STEPS_PER_EPOCH
    print(f"{args.spec}: {sum(t.numel() for t in model.parameters()):,} params, checkpoint {size:,} bytes; "
          f"step {step:.3f} s (batch {args.batch}), checkpoint {cost:.3f} s "
          f"({'background' if args.background else 'synchronous'}), ratio to a {STEPS_PER_EPOCH}-step epoch "
          f"{cost / epoch:.6f}")


if __name__ == "__main__":
    main()
