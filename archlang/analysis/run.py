"""A trained network to analyse: a run folder (or a spec plus a weights file), and its data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from archlang.compiler import Compiled, compile_spec
from archlang.errors import ArchlangError
from archlang.parser import read_source
from archlang.weights import load_into, load_weights, read_weights


@dataclass
class LoadedRun:
    compiled: Compiled
    model: nn.Module
    folder: Path | None
    recipe: dict[str, Any]
    run_info: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ArchlangError(f"unreadable ({err})", path=str(path)) from None


def _run_weights(folder: Path) -> dict[str, torch.Tensor]:
    final = folder / "model.safetensors"
    if final.is_file():
        return load_weights(final)
    from archlang.train.checkpoint import latest_good_checkpoint

    state = latest_good_checkpoint(folder / "checkpoints")
    if state is None:
        raise ArchlangError("the run has no weights yet (no model.safetensors, no checkpoint)", path=str(folder))
    return state.model


def load_run(target: str, weights: str | None = None) -> LoadedRun:
    """RUN folder, or SPEC (file or text) with --weights; without weights a spec gets its initialisation."""
    path = Path(target)
    if path.is_dir():
        spec_file = path / "spec.arch"
        if not spec_file.is_file():
            raise ArchlangError("not a run folder (no spec.arch)", path=str(path),
                                hint="give a folder written by `archlang train`, or a spec with --weights")
        compiled = compile_spec(read_source(str(spec_file)))
        state = read_weights(weights, compiled) if weights else _run_weights(path)
        recipe_file = path / "recipe.resolved.yaml"
        recipe = yaml.safe_load(recipe_file.read_text()) if recipe_file.is_file() else {}
        info = _read_json(path / "run.json")
        folder: Path | None = path
    else:
        compiled = compile_spec(read_source(target))
        state = read_weights(weights, compiled) if weights else None
        recipe, info, folder = {}, {}, None
    model = compiled.build()
    if state is not None:
        load_into(model, state, weights or str(path))
    return LoadedRun(compiled, model.eval(), folder, recipe, info)


def data_loader(run: LoadedRun, split: str, data_dir: str | None, subset: int | None = None,
                batch_size: int = 1000, dataset: str | None = None, recipe: str | None = None):
    """Batches of the run's dataset (or --dataset / --recipe), read and normalised as in training."""
    from archlang.train.data.select import analysis_loader

    return analysis_loader(run.compiled, run.recipe, run.run_info, dataset=dataset, recipe=recipe, data_dir=data_dir,
                           split=split, subset=subset, batch_size=batch_size)


@torch.no_grad()
def error_percent(model: nn.Module, loader) -> float:
    model.eval()
    wrong = seen = 0
    for x, y in loader.batches(0):
        wrong += int((model(x).argmax(1) != y).sum())
        seen += int(y.numel())
    return 100.0 * wrong / max(1, seen)
