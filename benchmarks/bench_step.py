"""Training-step speed of compiled archlang networks against hand-written PyTorch equivalents.

One training step = forward, cross-entropy backward, SGD step, batch 128 (as the issue asks).
Both networks of a pair run in this one process, interleaved: each repeat times a few steps of
the compiled net and of the hand-written one (tests/reference_nets.py), alternating which goes
first; the per-step medians are compared. Goal: compiled <= 1.02 x hand-written (the compiled
module must not interpret the IR at run time).

    python benchmarks/bench_step.py                     # all four pairs, defaults
    python benchmarks/bench_step.py --steps 2 --repeats 3 --nets wrn-16-4
    python benchmarks/bench_step.py --device cuda --batch 128
    python benchmarks/bench_step.py --threads 0          # torch's default CPU threads
    python benchmarks/bench_step.py --smoke              # seconds: the two FC pairs, batch 8, one step
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import reference_nets as R

import archlang

# name -> (spec, reference factory, input shape (C, H, W), classes)
PAIRS = {
    "wrn-16-4": ("wrn(depth=16, k=4)", lambda: R.wrn_ref(2, 4), (3, 32, 32), 10),
    "diracnet-16-1": ("diracnet(depth=16, k=1)", lambda: R.DiracNetCifarRef(16, 1), (3, 32, 32), 10),
    "gated-fc-d100": ("mlp(depth=100, width=50, block=gated(residual))",
                      lambda: R.MlpRef(100, 50, "gated"), (1, 28, 28), 10),
    "highway-fc-50": ("mlp(depth=49, width=50, block=highway, bn=false)",
                      lambda: R.MlpRef(49, 50, "highway", bn=False), (1, 28, 28), 10),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               steps: int, device: torch.device) -> float:
    """Seconds per training step, averaged over `steps` consecutive steps."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    sync(device)
    return (time.perf_counter() - start) / steps


def bench_pair(name: str, args: argparse.Namespace, device: torch.device) -> float:
    spec, make_ref, shape, classes = PAIRS[name]
    torch.manual_seed(0)
    compiled = archlang.compile(spec).to(device).train()
    reference = make_ref().to(device).train()
    n_c = sum(p.numel() for p in compiled.parameters())
    n_r = sum(p.numel() for p in reference.parameters())
    if n_c != n_r:
        print(f"  warning: {name}: {n_c:,} parameters compiled vs {n_r:,} hand-written")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, *shape, generator=g).to(device)
    y = torch.randint(0, classes, (args.batch,), generator=g).to(device)
    opts = {m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (compiled, reference)}

    for m in (compiled, reference):  # warm-up: allocator, kernels, autograd graph caches
        time_steps(m, opts[m], x, y, args.warmup, device)
    times: dict[str, list[float]] = {"compiled": [], "hand-written": []}
    for r in range(args.repeats):
        order = [("compiled", compiled), ("hand-written", reference)]
        if r % 2:
            order.reverse()
        for label, m in order:
            times[label].append(time_steps(m, opts[m], x, y, args.steps, device))
    c = statistics.median(times["compiled"])
    h = statistics.median(times["hand-written"])
    ratio = c / h
    verdict = "ok" if ratio <= args.goal else "ABOVE GOAL"
    print(f"{name:15s} params {n_c:>10,}  compiled {c * 1e3:9.1f} ms/step  hand-written {h * 1e3:9.1f} ms/step"
          f"  ratio {ratio:5.3f}  ({verdict})")
    return ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=sorted(PAIRS), default=list(PAIRS), help="which pairs to run")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="training steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per network first")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch's default). One thread by default: on a shared or "
                        "busy machine multi-threaded CPU timings swing by tens of percent")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--goal", type=float, default=1.02, help="compiled/hand-written ratio to meet")
    p.add_argument("--smoke", action="store_true", help="FC pairs, batch 8, one step: checks the benchmark runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.nets, args.batch, args.steps, args.repeats, args.warmup = ["gated-fc-d100", "highway-fc-50"], 8, 1, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"training step (forward + backward + SGD), batch {args.batch}, device {device}, "
          f"{args.repeats} x {args.steps} steps each, interleaved; goal ratio <= {args.goal}")
    ratios = [bench_pair(name, args, device) for name in args.nets]
    worst = max(ratios)
    print(f"worst ratio compiled/hand-written: {worst:.3f} ({'meets' if worst <= args.goal else 'misses'} "
          f"the goal of {args.goal})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
