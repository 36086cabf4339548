"""Inference speed of a folded DiracNet against the unfolded one and a plain network of the same shape.

DiracNets (abstract, sec. 2.3): the parameterisation has "no cost at all at inference" once
folded. Three networks, one process, interleaved repeats, eval mode, no grad:
  unfolded: NCReLU -> DiracConv (a*delta + b*W_norm computed every call) -> BN
  folded:   NCReLU -> plain conv with bias (BN folded in) -> identity   (`archlang fold`)
  plain:    NCReLU -> plain conv -> BN, the same shapes without Dirac parameterisation
Prints median seconds per batch and the ratios folded/unfolded and folded/plain.

    python benchmarks/bench_fold.py [--spec 'diracnet(depth=16, k=1)'] [--batch 64] [--repeats 7]
    python benchmarks/bench_fold.py --smoke     # seconds: a small DiracNet, one repeat
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import archlang
from archlang.analysis.transform import folded
from archlang.ir import core
from archlang.ir.base import IRNode


def _without_dirac(node: IRNode) -> IRNode:
    if isinstance(node, core.Dirac):
        return node.conv
    if isinstance(node, core.Seq):
        return core.Seq(items=[_without_dirac(i) for i in node.items])
    return node


def _time(model: torch.nn.Module, x: torch.Tensor, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        model(x)
    return (time.perf_counter() - start) / batches


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="diracnet(depth=16, k=1)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=3, help="batches per timing")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true", help="a small net, one repeat: checks the benchmark runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.spec, args.batch, args.batches, args.repeats = "diracnet(depth=10, k=0.5, input=[3, 16, 16])", 4, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    compiled = archlang.compile_spec(args.spec)
    torch.manual_seed(0)
    unfolded = compiled.build().eval()
    _, folded_model = folded(unfolded, compiled.network)
    from archlang.build import build

    plain = build(_without_dirac(compiled.network)).eval()  # type: ignore[arg-type]
    nets = {"unfolded": unfolded, "folded": folded_model, "plain": plain}
    x = torch.randn(args.batch, *compiled.input_shape)
    for net in nets.values():
        net(x)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in nets}
    for r in range(args.repeats):
        order = list(nets) if r % 2 == 0 else list(reversed(nets))
        for name in order:
            times[name].append(_time(nets[name], x, args.batches))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.spec}, batch {args.batch}, {torch.get_num_threads()} threads, median of {args.repeats}:")
    for name, t in med.items():
        print(f"  {name:9s} {t * 1000:8.2f} ms per batch")
    print(f"folded / unfolded = {med['folded'] / med['unfolded']:.3f}")
    print(f"folded / plain    = {med['folded'] / med['plain']:.3f}  (no cost at inference: about 1 or below)")


if __name__ == "__main__":
    main()
