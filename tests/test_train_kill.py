"""SIGKILL at random moments (inside steps and checkpoint writes), resume each time: the final
weights and metrics equal an uninterrupted run's, and no checkpoint is ever half-written."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import archlang
from archlang.runs import RunFolder
from archlang.runs.checkpoint import list_checkpoints, read_checkpoint
from archlang.train import TrainOptions, train
from archlang.train.signals import TrainingInterrupted

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="../shared/data/MNIST absent")

def read_metrics(folder: Path) -> list[dict]:
    return [row.as_dict() for row in RunFolder(folder).read_metrics()]

SPEC = "mlp(depth=4, width=24, block=gated(residual))"
FLAGS = ["--epochs", "2", "--batch-size", "32", "--subset", "256", "--data-dir", str(SHARED), "--no-progress",
         "--checkpoint-minutes", "0", "--threads", "1"]


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archlang", "train", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_checkpoint(folder: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    # Generous: a loaded machine can take a minute just to import torch in the child.
    deadline = time.monotonic() + timeout
    while not list_checkpoints(folder / "checkpoints") and proc.poll() is None:
        assert time.monotonic() < deadline, "training never wrote a checkpoint"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return train(archlang.compile_spec(SPEC), overrides={"epochs": 2, "batch_size": 32}, out=tmp_path_factory.mktemp("s"),
                 name="straight", data_dir=SHARED, subset=256,
                 options=TrainOptions(progress=False, log=lambda m: None, checkpoint_every_s=0.0))


def _same_as_straight(folder: Path, straight: Path) -> None:
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(read_metrics(folder)) == strip(read_metrics(straight))


def test_sigkill_during_steps_and_checkpoint_writes_then_resume(tmp_path: Path, straight: Path) -> None:
    folder = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    proc = _cli([SPEC, *FLAGS, "--out", str(tmp_path), "--name", "killed"])
    for _ in range(3):
        _wait_for_checkpoint(folder, proc)
        time.sleep(rng.uniform(0.0, 0.15))  # steps here take ~5 ms and checkpoints ~5 ms
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        for path in list_checkpoints(folder / "checkpoints"):
            read_checkpoint(path)  # every file that has a checkpoint name is whole
        proc = _cli(["--resume", str(folder), "--no-progress", "--checkpoint-minutes", "0", "--threads", "1"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert kills >= 1
    _same_as_straight(folder, straight)


def _signal_after_next_checkpoint(proc: subprocess.Popen, folder: Path, signum: int, seen: set[str]) -> str:
    """Stop the process once it wrote a checkpoint not in `seen`, send `signum`, let it go on; its stderr."""
    deadline = time.monotonic() + 300
    while not {p.name for p in list_checkpoints(folder / "checkpoints")} - seen:
        assert proc.poll() is None and time.monotonic() < deadline, "training never wrote a new checkpoint"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGSTOP)  # wherever it is, the signal arrives mid-run
    os.kill(proc.pid, signum)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    return err.decode()


def _signalling_at(step: int, signum: int) -> archlang.Compiled:
    """The spec, compiled so that its `step`-th training forward sends this process `signum`."""
    compiled = archlang.compile_spec(SPEC)
    build, calls = compiled.build, {"n": 0}

    def hook(module: torch.nn.Module, _inputs: object, _output: object) -> None:
        if module.training:
            calls["n"] += 1
            if calls["n"] == step:
                os.kill(os.getpid(), signum)

    def build_signalling() -> torch.nn.Module:
        model = build()
        model.register_forward_hook(hook)  # no new parameters: the checkpoints stay this spec's
        return model

    compiled.build = build_signalling  # type: ignore[method-assign]
    return compiled


def test_sigterm_and_sigint_checkpoint_the_step_then_resume_bit_exact(tmp_path: Path, straight: Path) -> None:
    folder = tmp_path / "signalled"
    proc = _cli([SPEC, *FLAGS, "--out", str(tmp_path), "--name", "signalled"])
    err = _signal_after_next_checkpoint(proc, folder, signal.SIGTERM, set())
    assert proc.returncode == 143, err
    newest = read_checkpoint(list_checkpoints(folder / "checkpoints")[-1]).progress
    assert err.strip().splitlines()[-1] == (f"interrupted by SIGTERM at epoch {newest.epoch + 1}, step {newest.step}; "
                                            f"checkpoint written. Continue with: archlang train --resume {folder}")
    assert "Traceback" not in err and RunFolder(folder).read_summary().status == "interrupted"
    # SIGINT, in this process: the resumed run signals itself at its 3rd step (mid-epoch, deterministic).
    opts = TrainOptions(progress=False, log=lambda m: None, checkpoint_every_s=0.0, threads=1)
    recipe = str(RunFolder(folder).recipe_path)
    with pytest.raises(TrainingInterrupted) as info:
        train(_signalling_at(3, signal.SIGINT), recipe=recipe, resume=folder, options=opts)
    after = read_checkpoint(list_checkpoints(folder / "checkpoints")[-1]).progress
    assert info.value.exit_code == 130 and (after.epoch, after.step) != (newest.epoch, newest.step)
    assert str(info.value) == (f"interrupted by SIGINT at epoch {after.epoch + 1}, step {after.step}; "
                               f"checkpoint written. Continue with: archlang train --resume {folder}")
    assert RunFolder(folder).read_summary().status == "interrupted"
    train(archlang.compile_spec(SPEC), recipe=recipe, resume=folder, options=opts)
    _same_as_straight(folder, straight)
