"""Everything decided before any data is read: the recipe, the run folder (created or opened, and
locked), the run's identity, the device. Reads files and takes the lock; trains nothing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archlang.compiler import Compiled
from archlang.errors import ArchlangError
from archlang.runs import RunFolder, RunIdentity, RunInfo
from archlang.train import ddp, sources
from archlang.train.data import Dataset
from archlang.train.options import TrainOptions
from archlang.train.recipes import ResolvedRecipe, build_recipe


@dataclass
class RunPlan:
    resolved: ResolvedRecipe
    ident: RunIdentity
    run: RunFolder  # locked by rank 0 for the life of the run
    recipe_label: str
    subset: int | None
    data_dir: str | Path | None
    device: torch.device
    resuming: bool
    run_hash: str  # run.json's: what every checkpoint of this run carries


    @property
    def folder(self) -> Path:
        return self.run.path


def _run_name(compiled: Compiled, resolved: ResolvedRecipe, ident: RunIdentity) -> str:
    return f"{compiled.family or 'net'}-{resolved.name}-{ident.run_hash[:8]}"


def resolve_recipe(compiled: Compiled, recipe: str | None, overrides: Mapping[str, Any] | None) -> ResolvedRecipe:
    """The recipe a run of `compiled` trains with: the YAML, the spec's train(...) clause, the overrides."""
    return build_recipe(recipe, family=compiled.family, family_args=compiled.family_args,
                        input_shape=tuple(compiled.input_shape), train_args=compiled.train_args,
                        train_spans=compiled.train_spans, spec_source=compiled.source, overrides=overrides,
                        network=compiled.spec)


def plan_run(compiled: Compiled, ctx: ddp.DistContext, opts: TrainOptions, *, recipe: str | None,
             overrides: Mapping[str, Any] | None, out: str | Path, name: str | None, resume: str | Path | None,
             data_dir: str | Path | None, subset: int | None, spec_text: str | None) -> RunPlan:
    opts.check()
    if subset is not None and subset < 1:
        raise ArchlangError(f"--subset must be at least 1, got {subset}")
    resolved = resolve_recipe(compiled, recipe, overrides)
    text = spec_text if spec_text is not None else compiled.source.text
    device = ddp.device_for(opts.device, ctx)
    # What cannot fit in memory is refused before a run folder or any data exists.
    compiled.check_buildable(resolved.recipe.batch_size, training=True, device=device)
    if resume is None:
        ident = RunIdentity.of(text, compiled.canonical, resolved, subset)
        path = Path(out) / (name or _run_name(compiled, resolved, ident))
        run = RunFolder.create(path) if ctx.is_main else RunFolder(path)
        return RunPlan(resolved, ident, run, resolved.name, subset, data_dir, device, False, ident.run_hash)
    run = RunFolder.open(resume, lock=ctx.is_main)
    try:
        return _plan_resume(run, compiled, resolved, text, subset, data_dir, device, opts)
    except ArchlangError:
        run.unlock()
        raise


def _plan_resume(run: RunFolder, compiled: Compiled, resolved: ResolvedRecipe, text: str, subset: int | None,
                 data_dir: str | Path | None, device: torch.device, opts: TrainOptions) -> RunPlan:
    saved: RunInfo = run.read_info()
    _check_same_arithmetic(run, saved, opts)
    if subset is not None and subset != saved.subset:
        raise ArchlangError(f"cannot resume: this run used --subset {saved.subset}, not {subset}", path=str(run.path))
    run.read_recipe()  # plain YAML and a mapping, whatever recipe flags were given
    ident = RunIdentity.of(text, compiled.canonical, resolved, saved.subset)
    run.check_resume(ident)
    _ = run.checkpoints  # a file in its place is refused now, not after an epoch of training
    if data_dir is None:  # the data the run started with, unless told otherwise
        data_dir = saved.data_dir
    return RunPlan(resolved, ident, run, saved.recipe_name or resolved.name, saved.subset, data_dir, device,
                   True, saved.run_hash)


def _check_same_arithmetic(run: RunFolder, saved: RunInfo, opts: TrainOptions) -> None:
    """Flushing denormals changes every later step's numbers: a resume with the other setting would not
    continue the run it resumes (its exact resume is a promise), so it is refused. Runs recorded before
    the option existed ran without it."""
    before = bool(saved.options.get("flush_denormal", False))
    if before != opts.flush_denormal:
        said = "with --flush-denormal" if before else "without --flush-denormal"
        raise ArchlangError(f"cannot resume: this run trained {said}; resume it the same way",
                            path=str(run.path), hint="denormal floats flushed to zero or not change the arithmetic "
                            f"of every step; {'add' if before else 'drop'} --flush-denormal, or start a new run")


def check_fit(compiled: Compiled, data: Dataset) -> None:
    shape = tuple(data.train.sample_shape())
    if tuple(compiled.input_shape) != shape:
        raise ArchlangError(f"the spec takes inputs of shape {tuple(compiled.input_shape)} but {data.name} images are {shape}",
                            hint="pick a recipe for this dataset with --recipe, or a spec for it")
    if compiled.num_classes != data.num_classes:
        raise ArchlangError(f"the spec has {compiled.num_classes} classes but {data.name} has {data.num_classes}",
                            hint="set the number of classes (dataset) in the spec to match")


def check_last_batch(compiled: Compiled, batch_size: int, images: int) -> None:
    """Refuse an epoch whose last batch holds one image when a batch norm sees one value per channel.

    torch's training-mode batch norm raises on that batch ("Expected more than 1 value per channel"),
    mid-epoch. Keras and Caffe keep a short last batch (torch's DataLoader too, drop_last=False);
    dropping it would train on other images than those asked for, so it is refused before training.
    A convolution's batch norm over H x W > 1 positions has values enough and trains as usual.
    """
    if images % batch_size != 1 and batch_size != 1:
        return
    single = next((layer for layer in compiled.summary.layers
                   if layer.kind == "batchnorm" and math.prod(layer.out_shape[1:]) == 1), None)
    if single is not None:
        last = "every batch holds" if batch_size == 1 else "the last batch of each epoch holds"
        raise ArchlangError(f"{images} training images at batch size {batch_size}: {last} 1 image, and batch norm "
                            f"(layer {single.path}) cannot train on one value per channel",
                            hint="change --subset or --batch-size so that no batch holds a single image")


def load_data(compiled: Compiled, plan: RunPlan, ctx: ddp.DistContext, opts: TrainOptions) -> Dataset:
    """The dataset, checked against the spec. Under torchrun rank 0 reads it first (downloading or
    decoding and caching it once); the other processes then read that copy instead of racing it."""
    r = plan.resolved.recipe

    def load() -> Dataset:
        data = sources.load_for_recipe(r, compiled.num_classes, Path(plan.data_dir) if plan.data_dir else None,
                                       download=opts.download, cache_dir=opts.cache_dir,
                                       input_shape=tuple(compiled.input_shape))
        check_fit(compiled, data)
        images = len(data.train) if plan.subset is None else min(plan.subset, len(data.train))
        check_last_batch(compiled, r.batch_size, images)
        return data

    first = ddp.agreed(ctx, lambda: load() if ctx.is_main else None)
    rest = ddp.agreed(ctx, lambda: None if ctx.is_main else load())
    return first if ctx.is_main else rest
