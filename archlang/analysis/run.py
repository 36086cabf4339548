"""A trained network to analyse: a run folder (or a spec plus a weights file), and its data.

The run folder is read through archlang.runs (load_run lives there); evaluation is training's own.
"""

from __future__ import annotations

from torch import nn

from archlang.runs.load import LoadedRun, load_run
from archlang.train.evaluate import evaluate

__all__ = ["LoadedRun", "data_loader", "error_percent", "load_run"]


def data_loader(run: LoadedRun, split: str, data_dir: str | None, subset: int | None = None,
                batch_size: int = 1000, dataset: str | None = None, recipe: str | None = None):
    """Batches of the run's dataset (or --dataset / --recipe), read and normalised as in training."""
    from archlang.train.data.select import analysis_loader

    return analysis_loader(run.compiled, run.recipe, run.run_info, dataset=dataset, recipe=recipe, data_dir=data_dir,
                           split=split, subset=subset, batch_size=batch_size)


def error_percent(model: nn.Module, loader) -> float:
    """Top-1 error in percent: training's own evaluation, so the numbers agree exactly."""
    return float(evaluate(model, loader).error or 0.0)
