"""`train(compiled, ...)`: plan a run (recipe, folder, lock), then hand it to the Trainer.

One process, or several under torchrun (DistributedDataParallel; see archlang.train.ddp).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from archlang.compiler import Compiled
from archlang.train import ddp
from archlang.train.evaluate import EvalResult, evaluate
from archlang.train.options import TrainOptions, tune_allocator
from archlang.train.plan import plan_run
from archlang.train.signals import TrainingInterrupted
from archlang.train.trainer import Trainer

__all__ = ["EvalResult", "TrainOptions", "TrainingInterrupted", "evaluate", "train", "tune_allocator"]


def _quiet(message: str) -> None:
    """The log of ranks > 0 under torchrun: rank 0 speaks for the whole launch."""


def train(
    compiled: Compiled,
    *,
    recipe: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    resume: str | Path | None = None,
    data_dir: str | Path | None = None,
    subset: int | None = None,
    options: TrainOptions | None = None,
    spec_text: str | None = None,
) -> Path:
    """Train a compiled spec with a paper recipe; return the run folder.

    recipe: a shipped recipe name or a YAML path (default: the family's recipe).
    overrides: recipe fields that win over the YAML and the spec's train(...) clause.
    resume: a run folder to continue from its newest good checkpoint (same spec and recipe).

    The run folder is locked for the whole call: a second writer fails at once. SIGTERM/SIGINT
    checkpoint the current step and raise TrainingInterrupted (after writing summary.json).
    Under torchrun (WORLD_SIZE > 1 in the environment) every process calls this; they train
    one DistributedDataParallel model on shards of the recipe's global batch, and rank 0
    alone writes the run folder (see archlang.train.ddp). Errors every process meets are
    raised on all of them, as ddp.ReportedByRankZero on ranks > 0.
    """
    opts = options or TrainOptions()
    with ddp.session(opts.device) as ctx:
        if not ctx.is_main:  # one voice per launch: rank 0 logs and draws the progress bar
            opts = replace(opts, progress=False, log=_quiet)
        plan = ddp.agreed(ctx, lambda: plan_run(compiled, ctx, opts, recipe=recipe, overrides=overrides, out=out,
                                                name=name, resume=resume, data_dir=data_dir, subset=subset,
                                                spec_text=spec_text))
        try:
            return Trainer(compiled, plan, ctx, opts).train()
        finally:
            plan.run.release()
