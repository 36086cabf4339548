"""The CPU cost of the hypotheses' jobs (`gated_hypotheses.py --project`): each job's grouped training step
timed against a single step of its Table 1 net in this process, scaled by that net's recorded epochs.
Its own module so that gated_hypotheses.py keeps to the jobs and their rows."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gated_mnist

if TYPE_CHECKING:
    from gated_hypotheses import Cell


def _training_step(spec: str, copy_sets: list[tuple[str, ...]], compile_: bool = False) -> Callable[[], None]:
    """One training step of grouped copies, copy i with recipe fields copy_sets[i] (one copy: a single run's own
    step) on fixed random batches; `compile_` as the job's --compile (its first call compiles)."""
    import torch
    import torch.nn.functional as F

    import archlang
    from archlang.grouped import grouped_loss
    from archlang.train import model_tools
    from archlang.train.grouped_run import build_group
    from archlang.train.recipe_yaml import parse_flag_value
    from archlang.train.recipes import build_recipe

    recipes = [build_recipe("gated-mnist", overrides={field: parse_flag_value(value) for field, value in
                                                      (s.split("=", 1) for s in sets)}).recipe for sets in copy_sets]
    compiled, copies, batch = archlang.compile_spec(spec), len(recipes), recipes[0].batch_size
    g = torch.Generator().manual_seed(1)
    x = torch.rand(copies, batch, *compiled.input_shape, generator=g)
    y = torch.randint(0, 10, (copies, batch), generator=g)
    if copies == 1:
        torch.manual_seed(0)
        model = compiled.build().train()
        model_tools.apply_init(model, recipes[0])
        optimizer = model_tools.build_optimizer(model, recipes[0], torch.device("cpu"))
        loss: Callable[[], torch.Tensor] = lambda: F.cross_entropy(model(x[0]), y[0])
    else:
        recipes = [r.model_copy(update={"seed": i}) for i, r in enumerate(recipes)]  # seeds 0..G-1
        model, optimizer = build_group([compiled.network] * copies, recipes, compile_=compile_)
        loss = lambda: grouped_loss(model(x), y).sum()

    def step() -> None:
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    return step


def _cpu_seconds(step: Callable[[], None], steps: int) -> float:
    """Median CPU seconds of `steps` calls, after two that warm the allocator and the optimizer state."""
    timings = []
    for _ in range(steps + 2):
        start = time.process_time()
        step()
        timings.append(time.process_time() - start)
    return statistics.median(timings[2:])


def _job_copies(chosen: list[Cell]) -> list[tuple[Cell, list[tuple[str, ...]]]]:
    """Each job once: one of its cells (network, kind, depth) and its copies' recipe fields, one per copy."""
    by_job: dict[str, list[Cell]] = {}
    for c in chosen:
        by_job.setdefault(c.job.name, []).append(c)
    return [(cs[0], [c.hypothesis.sets for c in cs for _ in (c.points or c.job.seeds)]) for cs in by_job.values()]


def project(chosen: list[Cell], steps: int, parallel: int) -> list[str]:
    """Each job's CPU time: (its grouped step / a single step of its Table 1 net, CPU time in this process)
    x the Table 1 seed-0 run's median (and fastest) epoch x 100 epochs. Those epochs ran one
    single-threaded run per core, so their wall time is close to their CPU time; the median also
    holds whatever else shared the cores then, the fastest is a lower bound."""
    import torch

    torch.set_num_threads(1)
    lines, median_total, fastest_total, jobs = [], 0.0, 0.0, _job_copies(chosen)
    for cell, copy_sets in jobs:
        baseline = gated_mnist.jobs((cell.d,), (cell.kind,), ())[0]
        epochs = [r.seconds for r in baseline.run.read_metrics()] if baseline.run.is_run() else []
        if not epochs:
            lines.append(f"{cell.job.name}: no Table 1 epochs to scale by ({baseline.name} has not run)")
            continue
        compiled = "--compile" in cell.job.extra  # the Table 1 baseline ran eagerly
        ratio = (_cpu_seconds(_training_step(cell.hypothesis.spec(cell.kind, cell.d), copy_sets, compiled), steps)
                 / _cpu_seconds(_training_step(baseline.spec, [()]), steps))
        median, fastest = ratio * statistics.median(epochs) * 100, ratio * min(epochs) * 100
        median_total, fastest_total = median_total + median, fastest_total + fastest
        lines.append(f"{cell.job.name}: {len(copy_sets)} grouped copies{' (--compile)' if compiled else ''} "
                     f"/ 1 single step = {ratio:.2f} "
                     f"(CPU time) x Table 1 epoch {statistics.median(epochs):.1f} s median, {min(epochs):.1f} s "
                     f"fastest, x 100 = {median / 3600:.2f} / {fastest / 3600:.2f} CPU h")
    lines.append(f"all {len(jobs)} jobs: {median_total / 3600:.1f} CPU h at the median epoch, "
                 f"{fastest_total / 3600:.1f} at the fastest; {parallel} side by side: "
                 f"{median_total / 3600 / parallel:.1f} / {fastest_total / 3600 / parallel:.1f} h")
    return lines
