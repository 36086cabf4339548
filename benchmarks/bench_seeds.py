"""Many seeds at the price of one: a training step of G grouped copies against single steps.

Both sides are the real training path: the single step is the trainer's (build, apply_init,
build_optimizer of the recipe: flat NAdam for gated-mnist, fused SGD otherwise) and the grouped
step is archlang.grouped's (one module for G copies, one flat optimizer step, per-copy batches).
Each repeat times a few steps of each side, alternating which goes first; medians are compared.

    python benchmarks/bench_seeds.py                   # the three acceptance figures, 1 and 2 threads
    python benchmarks/bench_seeds.py --threads 1 --repeats 9
    python benchmarks/bench_seeds.py --smoke           # seconds: tiny nets, checks it runs
    python benchmarks/bench_seeds.py --nets gated-fc-d50 gated-fc-d100 --copies 4 5   # the reproductions' G

Figures: FC nets, G = 8 grouped step / one single step (goal <= 2.0, aim 1.5);
wrn(depth=16, k=1), G = 4 grouped step / 4 single steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import archlang
from archlang.grouped import grouped_loss
from archlang.train import model_tools
from archlang.train.compiling import compiled_module
from archlang.train.grouped_run import build_group
from archlang.train.loop import tune_allocator
from archlang.train.recipes import build_recipe

# name -> (spec, recipe, copies, batch, single steps the grouped step is compared with)
CASES = {
    "gated-fc-d100": ("mlp(depth=100, width=50, block=gated(residual))", "gated-mnist", 8, 128, 1),
    "gated-fc-d50": ("mlp(depth=50, width=50, block=gated(residual))", "gated-mnist", 8, 128, 1),
    "highway-fc-50": ("mlp(depth=49, width=50, block=highway, bn=false)", "highway-mnist", 8, 100, 1),
    "wrn-16-1": ("wrn(depth=16, k=1)", "wrn-cifar", 4, 128, 4),
}
SMOKE = {
    "gated-fc-d100": ("mlp(depth=4, width=16, block=gated(residual))", "gated-mnist", 8, 16, 1),
    "gated-fc-d50": ("mlp(depth=3, width=16, block=gated(residual))", "gated-mnist", 8, 16, 1),
    "highway-fc-50": ("mlp(depth=3, width=16, block=highway, bn=false)", "highway-mnist", 8, 16, 1),
    "wrn-16-1": ("wrn(depth=10, k=1, input=[3, 8, 8])", "wrn-cifar", 4, 8, 4),
}


def _timed(step: Callable[[], None], steps: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process, all threads) per step."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def _single_step(compiled, recipe, x: torch.Tensor, y: torch.Tensor, compile_model: bool) -> Callable[[], None]:
    torch.manual_seed(recipe.seed)
    model = compiled.build().train()
    model_tools.apply_init(model, recipe)
    optimizer = model_tools.build_optimizer(model, recipe, torch.device("cpu"))
    forward = compiled_module(model) if compile_model else model  # what `archlang train --compile` runs

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(forward(x), y).backward()
        optimizer.step()
    return step


def _grouped_step(compiled, recipe, copies: int, x: torch.Tensor, y: torch.Tensor,
                  compile_model: bool) -> Callable[[], None]:
    recipes = [recipe.model_copy(update={"seed": i}) for i in range(copies)]  # seeds 0..G-1, as --seeds G
    model, optimizer = build_group([compiled.network] * copies, recipes, compile_=compile_model)

    def step() -> None:
        optimizer.zero_grad()
        grouped_loss(model(x), y).sum().backward()
        optimizer.step()
    return step


def _measure(sides: dict[str, Callable[[], None]], args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds per step of each side, repeats interleaved in a rotating order."""
    for step in sides.values():
        _timed(step, args.warmup)  # the compiled sides compile here
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for r in range(args.repeats):
        for label in names[r % len(names):] + names[: r % len(names)]:
            seconds, cpu_seconds = _timed(sides[label], args.steps)
            wall[label].append(seconds)
            cpu[label].append(cpu_seconds)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in sides}


def bench(name: str, case: tuple, args: argparse.Namespace) -> float:
    spec, recipe_name, copies, batch, singles = case
    compiled = archlang.compile_spec(spec)
    recipe = build_recipe(recipe_name).recipe
    g = torch.Generator().manual_seed(1)
    x = torch.randn(copies, batch, *compiled.input_shape, generator=g)
    y = torch.randint(0, compiled.num_classes, (copies, batch), generator=g)
    sides = {"single": _single_step(compiled, recipe, x[0], y[0], False),
             "grouped": _grouped_step(compiled, recipe, copies, x, y, False)}
    if args.compile:
        sides["single compiled"] = _single_step(compiled, recipe, x[0], y[0], True)
        sides["grouped compiled"] = _grouped_step(compiled, recipe, copies, x, y, True)
    times = _measure(sides, args)
    against = "1 single step" if singles == 1 else f"{singles} single steps"
    pairs = [("grouped", "single")]
    if args.compile:
        pairs += [("grouped compiled", "single"), ("grouped compiled", "single compiled")]
    ratio = 0.0
    for top, bottom in pairs:
        # CPU time is what the step itself cost: on a shared machine wall time also counts the time
        # other processes held the core, which falls more often on the longer (grouped) step.
        (gw, gc), (sw, sc) = times[top], times[bottom]
        ratio = gw / (singles * sw)
        print(f"{name:14s} threads {torch.get_num_threads()}  G={copies}  {bottom} {sw * 1e3:8.1f} ms/step  "
              f"{top} {gw * 1e3:8.1f} ms/step  ratio vs {against}: {ratio:5.2f} (median), "
              f"CPU-time ratio {gc / (singles * sc):5.2f}")
    return ratio


def _with_copies(case: tuple, copies: list[int] | None) -> list[tuple]:
    if not copies:
        return [case]
    spec, recipe, _, batch, singles = case
    return [(spec, recipe, g, batch, g if singles > 1 else 1) for g in copies]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=sorted(CASES), default=["gated-fc-d100", "highway-fc-50", "wrn-16-1"])
    p.add_argument("--copies", type=int, nargs="+", metavar="G",
                   help="grouped copies, one figure each (default: each net's own, 8 or 4); an FC net is "
                        "compared with 1 single step, wrn with G")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads, one figure each")
    p.add_argument("--steps", type=int, default=3, help="training steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median is reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action="store_true",
                   help="also time both sides torch.compile'd in chunks of identical blocks (archlang.regional; "
                        "the first step compiles: seconds to a minute)")
    p.add_argument("--smoke", action="store_true", help="tiny nets, one repeat: checks the benchmark runs")
    args = p.parse_args(argv)
    tune_allocator()  # as the trainer does: no mmap/munmap (and page faults) per large tensor
    cases = SMOKE if args.smoke else CASES
    if args.smoke:
        args.steps, args.repeats, args.warmup, args.threads = 1, 1, 1, [1]
    print(f"training step, grouped copies vs single runs; {args.repeats} x {args.steps} steps, interleaved, median")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.nets:
            for case in _with_copies(cases[name], args.copies):
                bench(name, case, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
