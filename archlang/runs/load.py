"""A trained network to analyse: a run folder (or a spec plus a weights file), read through RunFolder."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlang.compiler import Compiled, compile_spec
from archlang.errors import ArchlangError, Source, shorten
from archlang.parser import read_source
from archlang.runs.checkpoint import latest_good_checkpoint, latest_good_grouped
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
    """The final weights, else those of the newest good checkpoint (for a grouped copy: its own copy
    of the group's newest good grouped checkpoint, as a stopped single run gives its newest one)."""
    if run.has_model():
        return load_weights(run.model_path)
    state = latest_good_checkpoint(run.checkpoints)
    if state is not None:
        return state.model
    copy = _grouped_copy_weights(run)
    if copy is None:
        raise ArchlangError("the run has no weights yet (no final weights, no checkpoint)", path=str(run.path))
    return copy


def _grouped_copy_weights(run: RunFolder) -> dict[str, torch.Tensor] | None:
    """Copy i's tensors of its group's newest grouped checkpoint (kept in the first member's folder),
    under the single network's names (the grouped tensors hold the copies on their first axis)."""
    group = run.read_group() if run.is_run() else None
    if group is None or run.path.name not in group["folders"]:
        return None
    leader = RunFolder(run.path.parent / group["folders"][0])
    state = latest_good_grouped(leader.checkpoints, warn=lambda message: print(message, file=sys.stderr))
    if state is None:
        return None
    i = group["folders"].index(run.path.name)
    if i >= len(state.progress) or state.progress[i].run_hash != run.read_info().run_hash:
        raise ArchlangError(f"grouped checkpoint {state.path.name} belongs to another group of runs",
                            path=str(state.path), hint="move it out of checkpoints/ to read the one before it")
    # A diverged copy stops training but stays in the grouped tensors: its slice is what overflowed.
    if (reason := state.progress[i].diverged) is not None:
        raise ArchlangError(f"grouped copy {shorten(run.path.name)} diverged ({shorten(reason, 80)}); its weights "
                            "in the group's checkpoint are not finite", path=str(run.path),
                            hint="analyse a copy that finished, or train this point again with a smaller lr")
    return {name: tensor[i].clone() for name, tensor in state.model.items()}


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
