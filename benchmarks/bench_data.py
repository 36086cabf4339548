"""Cost of the data pipeline: training steps fed by the batch loader (uint8 gather + crop/flip
+ normalise, per batch) against the same steps on batches prepared beforehand.

    python benchmarks/bench_data.py --data-dir ../shared/data            # CIFAR-10, WRN-16-1
    python benchmarks/bench_data.py --data-dir ../shared/data --spec 'mlp(depth=100, width=50, block=gated(residual))' --recipe gated-mnist
    python benchmarks/bench_data.py --smoke     # seconds: synthetic images, a small net, no data needed

The data comes through the trainer's own functions (load_for_recipe, statistics, make_loader),
so the benchmark follows the data API instead of its internals.

Prints the wall time of both and their ratio (goal: at most 1.05).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import archlang
from archlang.train import model_tools
from archlang.train.data import Dataset, Split, load_for_recipe, make_loader, statistics
from archlang.train.loop import tune_allocator
from archlang.train.recipes import build_recipe


def _steps(model, optimizer, batches) -> float:
    start = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def _fresh(compiled, recipe):
    torch.manual_seed(recipe.seed)
    model = compiled.build()
    model_tools.apply_init(model, recipe)
    model.train()
    return model, model_tools.build_optimizer(model, recipe, torch.device("cpu"))


def _synthetic(compiled, recipe) -> Dataset:
    """Random uint8 images of the spec's input shape: the smoke run needs no dataset on disk."""
    g = torch.Generator().manual_seed(0)
    shape, classes = compiled.input_shape, compiled.num_classes

    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                     torch.randint(0, classes, (n,), generator=g))
    return Dataset("synthetic", split(4 * recipe.batch_size), split(recipe.batch_size), classes,
                   torch.full((shape[0],), 0.5), torch.full((shape[0],), 0.25), "synthetic")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="wrn(depth=16, k=1)")
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=40, help="steps timed (a whole epoch takes minutes on 2 cores)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="synthetic images, a small net, 3 steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.spec, args.recipe, args.steps = "wrn(depth=10, k=1, input=[3, 16, 16])", "wrn-cifar", 3
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()

    compiled = archlang.compile_spec(args.spec)
    overrides = {"batch_size": 16} if args.smoke else None
    recipe = build_recipe(args.recipe, family=compiled.family, family_args=compiled.family_args,
                          input_shape=compiled.input_shape, overrides=overrides).recipe
    data = _synthetic(compiled, recipe) if args.smoke else load_for_recipe(recipe, compiled.num_classes, args.data_dir)
    mean, std = statistics(recipe, data)
    loader = make_loader(data.train, recipe, train=True, batch_size=recipe.batch_size, seed=recipe.seed, mean=mean,
                         std=std, normalize=recipe.normalize, device=torch.device("cpu"))
    steps = min(args.steps, len(loader))

    def pipeline():
        for i, batch in enumerate(loader.batches(epoch=0)):
            if i == steps:
                return
            yield batch

    # Warm up allocator and kernels on the same shapes.
    model, optimizer = _fresh(compiled, recipe)
    _steps(model, optimizer, [next(iter(loader.batches(epoch=1)))] * 3)
    prepared = list(pipeline())
    # Interleave the two runs step by step (two models from the same init) so that load from
    # other processes on the machine falls on both alike.
    fed_model, fed_opt = _fresh(compiled, recipe)
    pre_model, pre_opt = _fresh(compiled, recipe)
    with_pipeline = compute_only = 0.0
    fed = pipeline()
    for batch in prepared:
        start = time.perf_counter()
        _steps(fed_model, fed_opt, [next(fed)])
        with_pipeline += time.perf_counter() - start
        compute_only += _steps(pre_model, pre_opt, [batch])
    data_only_start = time.perf_counter()
    for _ in pipeline():
        pass
    data_only = time.perf_counter() - data_only_start

    print(f"spec {compiled.canonical} | recipe {args.recipe or 'default'} | dataset {data.name} | "
          f"{steps} steps of batch {recipe.batch_size} | torch threads {torch.get_num_threads()}")
    print(f"training steps fed by the loader : {with_pipeline:8.2f} s")
    print(f"same steps on prepared batches   : {compute_only:8.2f} s")
    print(f"loader alone (gather+augment)    : {data_only:8.2f} s  ({1000 * data_only / steps:.1f} ms/batch)")
    print(f"ratio (goal <= 1.05)             : {with_pipeline / compute_only:8.3f}")
    print(f"ratio from loader-alone time     : {(compute_only + data_only) / compute_only:8.3f}  (less sensitive to load)")


if __name__ == "__main__":
    main()
