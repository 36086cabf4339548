"""`archlang train` under torchrun: two CPU processes (gloo) train the weights one process trains
with the same global batch, write one complete run folder, resume exactly, and stop together
on a NaN that only one of them sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import archlang
from archlang.runs import RunFolder
from archlang.runs.checkpoint import list_checkpoints, read_checkpoint
from archlang.train import TrainOptions, train

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
pytestmark = [
    pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="../shared/data/MNIST absent"),
    pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                       reason="torch.distributed with gloo is not available"),
]

def read_metrics(folder: Path) -> list[dict]:
    return [row.as_dict() for row in RunFolder(folder).read_metrics()]

# No batchnorm: under DDP its statistics are per process (half batches), by design unlike one process.
SPEC = "mlp(depth=2, width=16, bn=false)"
FLAGS = ["--subset", "256", "--epochs", "1", "--batch-size", "32", "--data-dir", str(SHARED), "--no-progress",
         "--threads", "1"]
RUN_FILES = ("spec.arch", "spec.canonical.arch", "recipe.given.yaml", "recipe.resolved.yaml", "run.json",
             "metrics.jsonl", "summary.json", "model.safetensors", "curves.png")


def _torchrun(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc_per_node 2 ARGS` (torchrun's own module, so no PATH lookup)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args],
                          check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _without_time(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def single(runs: Path) -> Path:
    torch.set_num_threads(1)
    return train(archlang.compile_spec(SPEC), overrides={"epochs": 1, "batch_size": 32}, out=runs, name="single",
                 data_dir=SHARED, subset=256, options=TrainOptions(progress=False, log=lambda message: None))


@pytest.fixture(scope="module")
def launched(runs: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    done = _torchrun(["-m", "archlang", "train", SPEC, *FLAGS, "--out", str(runs), "--name", "ddp"])
    assert done.returncode == 0, done.stderr[-4000:]
    return runs / "ddp", done


def test_two_processes_train_what_one_process_trains(single: Path, launched: tuple[Path, Any]) -> None:
    folder, done = launched
    for name in RUN_FILES:
        assert (folder / name).is_file(), name
    assert json.loads((folder / "run.json").read_text())["processes"] == 2
    assert json.loads((folder / "summary.json").read_text())["status"] == "finished"
    assert len(list_checkpoints(folder / "checkpoints")) == 1  # one epoch: the end-of-epoch checkpoint
    # Rank 1 is silent: one folder printed, one epoch line logged.
    assert done.stdout.strip().splitlines() == [str(folder)]
    assert done.stderr.count("epoch 1/1:") == 1
    # The same global batches and the averaged gradient of each: the weights of one process
    # (summation order differs, so not bit for bit: about 6e-8 measured).
    mine, theirs = _weights(folder), _weights(single)
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=0, msg=key)
    [ours], [one] = read_metrics(folder), read_metrics(single)
    assert ours["steps"] == one["steps"] == 8
    assert ours["train_error"] == one["train_error"] and ours["test_error"] == one["test_error"]
    assert ours["train_loss"] == pytest.approx(one["train_loss"], rel=1e-6)
    assert ours["test_loss"] == pytest.approx(one["test_loss"], rel=1e-6)


def test_resume_nan_and_bad_batch_under_torchrun(launched: tuple[Path, Any], runs: Path) -> None:
    work = runs / "worker"
    work.mkdir()
    done = _torchrun([str(REPO / "tests" / "ddp_worker.py"), str(SHARED), str(work)])
    assert done.returncode == 0, done.stderr[-4000:]
    rank0, rank1 = (json.loads((work / f"rank{r}.json").read_text()) for r in (0, 1))

    # Stopped after 3 steps, resumed under torchrun: exactly the uninterrupted two-process run.
    assert rank0["stopped"] == "stopped"
    straight, pieces = launched[0], work / "pieces"
    assert all(torch.equal(a, b) for a, b in zip(_weights(straight).values(), _weights(pieces).values()))
    assert _without_time(read_metrics(pieces)) == _without_time(read_metrics(straight))

    # NaN on rank 1 alone (its 6th step): both processes stop at that step with the same message,
    # rank 1's marked as reported by rank 0 so the CLI prints it once.
    assert rank0["nan"]["type"] == "ArchlangError" and rank1["nan"]["type"] == "ReportedByRankZero"
    assert rank0["nan"]["message"] == rank1["nan"]["message"]
    assert "loss became nan at epoch 1, step 6" in rank0["nan"]["message"]
    assert "ckpt-e00000-s0000005" in rank0["nan"]["message"]  # the last good checkpoint, kept
    nan_folder = work / "nan"
    assert json.loads((nan_folder / "summary.json").read_text())["status"] == "diverged"
    newest = list_checkpoints(nan_folder / "checkpoints")[-1]
    assert newest.name == "ckpt-e00000-s0000005.safetensors"
    state = read_checkpoint(newest)
    assert state.progress.world_size == 2 and len(state.progress.rng) == 2  # typed Progress, one RNG format

    # A global batch the processes cannot split evenly is refused, on both, before training.
    assert "not divisible by the 2 processes" in rank0["odd_batch"]["message"]
    assert rank1["odd_batch"]["type"] == "ReportedByRankZero"
    assert not (work / "odd" / "run.json").exists()
