"""A trained network to analyse: a run folder (or a spec plus a weights file), read through RunFolder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlang.compiler import Compiled, compile_spec
from archlang.errors import ArchlangError, Source
from archlang.parser import read_source
from archlang.runs.checkpoint import latest_good_checkpoint
from archlang.runs.folder import RunFolder
from archlang.weights import load_into, load_weights, read_weights


@dataclass
class LoadedRun:
    compiled: Compiled
    model: nn.Module
    folder: Path | None
    recipe: dict[str, Any]  # recipe.resolved.yaml ({} for a spec plus weights)
    run_info: dict[str, Any]  # run.json, validated ({} for a spec plus weights)
    run: RunFolder | None = field(default=None)


def run_weights(run: RunFolder) -> dict[str, torch.Tensor]:
    """The final weights, else those of the newest good checkpoint."""
    if run.has_model():
        return load_weights(run.model_path)
    state = latest_good_checkpoint(run.checkpoints)
    if state is None:
        raise ArchlangError("the run has no weights yet (no final weights, no checkpoint)", path=str(run.path))
    return state.model


def load_run(target: str, weights: str | None = None) -> LoadedRun:
    """RUN folder, or SPEC (file or text) with --weights; without weights a spec gets its initialisation."""
    path = Path(target)
    if path.is_dir():
        if not (path / RunFolder.SPEC).is_file():
            raise ArchlangError(f"not a run folder (no {RunFolder.SPEC})", path=str(path),
                                hint="give a folder written by `archlang train`, or a spec with --weights")
        run = RunFolder(path)  # a spec and weights are enough; run.json and the recipe are read when present
        text, name = run.read_spec()
        compiled = compile_spec(Source(text, name))
        info = run.read_info().as_dict() if run.is_run() else {}
        recipe = run.read_recipe() if run.recipe_path.exists() else {}
        state = read_weights(weights, compiled) if weights else run_weights(run)
        folder: Path | None = path
    else:
        compiled = compile_spec(read_source(target))
        state = read_weights(weights, compiled) if weights else None
        recipe, info, folder, run = {}, {}, None, None
    model = compiled.build()
    if state is not None:
        load_into(model, state, weights or str(path))
    return LoadedRun(compiled, model.eval(), folder, recipe, info, run)
