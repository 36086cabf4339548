"""Fuzz of run folders and checkpoints: random byte edits, truncations and type swaps of run.json,
the recipe, the metrics, the summary and a checkpoint's progress (re-signed, so validation and not
only the digest is exercised). Opening and resuming such a folder must end in an ArchlangError or
succeed, never any other exception. 1,000 examples by default; ARCHLANG_FUZZ_EXAMPLES=10000 for
the long run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archlang
from archlang.errors import ArchlangError
from archlang.runs import MetricsRow, Progress, RunFolder, RunIdentity, Summary, Totals
from archlang.runs import checkpoint as ckpt
from archlang.runs import rng as run_rng
from archlang.train.checkpointing import load_into

# 100 examples by default keep the suite fast; ARCHLANG_FUZZ_EXAMPLES=1000 (or more) for the long run.
EXAMPLES = int(os.environ.get("ARCHLANG_FUZZ_EXAMPLES", "100"))
SPEC = "mlp(depth=2, width=8)"
HASH = "f" * 64
FILES = ["run.json", "recipe.resolved.yaml", "metrics.jsonl", "summary.json", "spec.arch", "checkpoint"]
SWAPS = st.sampled_from([None, True, -1, 0, 2**70, 1.5, float("nan"), "x", "", [], [1, "a"], {}, {"a": [None]}])


def _parts() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = archlang.compile_spec(SPEC).build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiled = archlang.compile_spec(SPEC)
    run = RunFolder.create(tmp_path_factory.mktemp("fuzz") / "run")
    ident = RunIdentity(SPEC, compiled.canonical, "epochs: 2\n", {"epochs": 2, "lr": 0.1}, HASH, None)
    info = run.write_identity(ident, {"dataset": "mnist", "data_dir": "/data", "options": {"device": "cpu"}})
    row = MetricsRow(epoch=1, train_loss=0.5, train_error=10.0, test_loss=0.4, test_error=9.0, lr=0.1, seconds=1.0)
    run.rewrite_metrics([row])
    run.write_summary(Summary(status="stopped", epochs_done=1, epochs=2))
    model, opt, sched = _parts()
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    progress = Progress(epoch=1, step=0, totals=Totals(), history=[row], run_hash=info.run_hash, rng=[run_rng.capture()])
    ckpt.write_snapshot(run.checkpoints, ckpt.snapshot(model, opt, sched, progress, copy=False))
    run.unlock()
    return run.path


def _open_and_resume(path: Path) -> None:
    """The resume path of `archlang train --resume` and of the analyses, in process."""
    run = RunFolder.open(path, lock=True)
    try:
        run.read_spec()
        run.read_recipe()
        info = run.read_info()
        run.read_metrics()
        run.read_summary()
        state = ckpt.latest_good_checkpoint(run.checkpoints, warn=lambda message: None)
        if state is None:
            return
        if state.progress.run_hash != info.run_hash:
            raise ArchlangError("foreign checkpoint")
        load_into(state, *_parts())
        run_rng.restore(state.progress.rng[0], lambda message: None)
    finally:
        run.unlock()


def _swap(value: Any, path: list[int], replacement: Any) -> Any:
    """`value` with the node reached by `path` (indices into dict keys / list items) replaced."""
    if not path or not isinstance(value, (dict, list)) or not value:
        return replacement
    if isinstance(value, dict):
        key = list(value)[path[0] % len(value)]
        return {**value, key: _swap(value[key], path[1:], replacement)}
    i = path[0] % len(value)
    return [*value[:i], _swap(value[i], path[1:], replacement), *value[i + 1:]]


def _resign(path: Path, edit: Any) -> None:
    """Apply `edit` to a checkpoint's progress JSON and write it back with a valid digest."""
    meta, tensors = ckpt._open(path)
    meta = {**meta, "progress": json.dumps(edit(json.loads(meta["progress"])))}
    meta["digest"] = ckpt._digest(tensors, meta)
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=meta)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.sampled_from(FILES), kind=st.sampled_from(["byte", "truncate", "swap"]),
       where=st.floats(0.0, 1.0), byte=st.integers(0, 255), path=st.lists(st.integers(0, 50), max_size=4),
       replacement=SWAPS)
def test_damaged_run_folders_give_archlang_errors_only(template: Path, tmp_path_factory: pytest.TempPathFactory,
                                                       target: str, kind: str, where: float, byte: int,
                                                       path: list[int], replacement: Any) -> None:
    folder = tmp_path_factory.mktemp("case", numbered=True) / "run"
    shutil.copytree(template, folder)
    file = ckpt.list_checkpoints(folder / "checkpoints")[-1] if target == "checkpoint" else folder / target
    data = file.read_bytes()
    if kind == "byte":
        i = int(where * (len(data) - 1))
        file.write_bytes(data[:i] + bytes([byte]) + data[i + 1:])
    elif kind == "truncate":
        file.write_bytes(data[: int(where * len(data))])
    elif target == "checkpoint":
        _resign(file, lambda progress: _swap(progress, path, replacement))
    elif target.endswith(".json"):
        file.write_text(json.dumps(_swap(json.loads(data), path, replacement)))
    else:  # YAML, JSONL, spec text: the swapped value written as a line of its own
        file.write_text(data.decode() + json.dumps(replacement) + "\n")
    try:
        _open_and_resume(folder)
    except ArchlangError:
        pass
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
