"""Hostile run folders and checkpoints: each ends in one message (exit 2) or a documented success,
never a traceback, and nothing is lost: the previous good checkpoint and every input file stay as
they were. Trained runs are tiny (64 MNIST images, 2 steps an epoch)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA

import archlang
from archlang.cli import main
from archlang.runs import RunFolder
from archlang.runs.checkpoint import list_checkpoints, read_checkpoint, snapshot, write_snapshot
from archlang.train import TrainOptions, train

REPO = Path(__file__).resolve().parents[2]
SHARED = SHARED_DATA  # tests/conftest.py's folder ($ARCHLANG_TEST_DATA, else ../shared/data)
pytestmark = pytest.mark.usefixtures("shared_mnist")  # the shared fixture: skipped, saying why, without MNIST

SPEC = "mlp(depth=2, width=16)"
FAST = {"epochs": 3, "batch_size": 32}
QUIET = ["--no-progress", "--threads", "1"]


def _train(out: Path, name: str, spec: str = SPEC, **overrides: object) -> Path:
    opts = TrainOptions(progress=False, log=lambda m: None, checkpoint_every_s=0.0, max_steps=3, threads=1)
    return train(archlang.compile_spec(spec), overrides={**FAST, **overrides}, out=out, name=name, data_dir=SHARED,
                 subset=64, options=opts)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped after 3 steps (epoch 2, step 1), with two checkpoints."""
    return _train(tmp_path_factory.mktemp("runs"), "base")


@pytest.fixture
def run(stopped_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(stopped_run, copy)
    return copy


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _refused(capsys: pytest.CaptureFixture[str], folder: Path, argv: list[str], message: str) -> str:
    """argv fails with exit 2 and `message`, and leaves every file of `folder` as it was."""
    before = _files(folder)
    code, err = _cli(capsys, *argv)
    assert code == 2, err
    assert message in err, err
    assert _files(folder) == before
    return err


def _resume(folder: Path, *flags: str) -> list[str]:
    return ["train", "--resume", str(folder), *QUIET, *flags]


ANALYSES = [["prune"], ["gates", "--no-data"], ["fold", "--out"]]


def _analysis(command: list[str], folder: Path) -> list[str]:
    if command[-1] == "--out":
        return [command[0], str(folder), "--out", str(folder.parent / "folded.safetensors")]
    return [command[0], str(folder), *command[1:]]


@pytest.mark.parametrize("argv", [[], ["--epochs", "3"]], ids=["plain", "with-flag"])
def test_run_json_that_is_a_list(run: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    (run / "run.json").write_text("[1, 2, 3]\n")
    _refused(capsys, run, _resume(run, *argv), f"{run / 'run.json'}: error: expected a JSON object, found a list")


def test_run_json_with_a_number_for_data_dir(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (run / "run.json").read_text()
    (run / "run.json").write_text(text.replace(f'"data_dir": "{SHARED.resolve()}"', '"data_dir": 5'))
    message = f"{run / 'run.json'}: error: damaged (data_dir: Input should be a valid string)"
    _refused(capsys, run, _resume(run), message)
    for command in ANALYSES:
        _refused(capsys, run, _analysis(command, run), message)


@pytest.mark.parametrize(("text", "message"), [
    ("!!python/object/apply:os.system ['echo owned']\n",
     "recipe.resolved.yaml is not plain YAML (could not determine a constructor for the tag"),
    ("- 1\n- 2\n", "recipe.resolved.yaml must be a mapping of recipe fields, not a list"),
], ids=["python-tag", "list"])
def test_hostile_resolved_recipe(run: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    (run / "recipe.resolved.yaml").write_text(text)
    for argv in (_resume(run), _resume(run, "--epochs", "3"), _resume(run, "--lr", "0.5")):
        _refused(capsys, run, argv, message)
    for command in ANALYSES:
        _refused(capsys, run, _analysis(command, run), message)


def test_latin1_spec(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "spec.arch").write_bytes("# café\nmlp(depth=2, width=16)\n".encode("latin-1"))
    message = "spec.arch is not UTF-8 text (byte 0xe9 at offset 5)"
    _refused(capsys, run, _resume(run), message)
    _refused(capsys, run, _analysis(["prune"], run), message)


def test_checkpoints_replaced_by_a_file_fails_before_training(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("not a folder")
    start = time.monotonic()
    _refused(capsys, run, _resume(run), f"{run / 'checkpoints'}: error: checkpoints/ is not a folder")
    assert time.monotonic() - start < 30


def test_disk_full_while_checkpointing(run: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def full(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    kept = {p.name: p.read_bytes() for p in list_checkpoints(run / "checkpoints")}
    code, err = _cli(capsys, *_resume(run, "--checkpoint-minutes", "0"))
    assert code == 2
    assert "error: cannot write checkpoint: No space left on device" in err
    assert "hint: the disk is full: free some space and run the command again (nothing was overwritten)" in err
    assert {p.name: p.read_bytes() for p in list_checkpoints(run / "checkpoints")} == kept
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
    assert RunFolder(run).read_summary().status == "failed"


def test_foreign_checkpoint_is_refused_naming_both_runs(run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    other = _train(tmp_path, "other", seed=7)
    foreign = list_checkpoints(other / "checkpoints")[-1]
    shutil.copy(foreign, run / "checkpoints" / "ckpt-e00002-s0000000.safetensors")
    mine, theirs = RunFolder(run).read_info().run_hash, RunFolder(other).read_info().run_hash
    _refused(capsys, run, _resume(run), f"error: checkpoint ckpt-e00002-s0000000.safetensors belongs to another run "
                                        f"({theirs[:16]}), not to this one ({mine[:16]})")


def test_wrong_width_checkpoint_with_this_runs_identity(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    good = read_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    wide = archlang.compile_spec("mlp(depth=2, width=17)").build()
    opt = torch.optim.SGD(wide.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    progress = good.progress.model_copy(update={"epoch": 2, "step": 0})
    write_snapshot(run / "checkpoints", snapshot(wide, opt, sched, progress, copy=False))
    _refused(capsys, run, _resume(run), "error: checkpoint does not fit this network (")


def test_edited_metadata_byte_falls_back_then_nothing_usable(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    older, newest = list_checkpoints(run / "checkpoints")
    field = b'\\"step\\": 1'
    newest.write_bytes(newest.read_bytes().replace(field, field[:-1] + b"0", 1))
    older.write_bytes(older.read_bytes().replace(b'\\"epoch\\": 1', b'\\"epoch\\": 2', 1))
    _refused(capsys, run, _resume(run), "error: no usable checkpoint: every checkpoint is damaged "
                                        f"({newest.name}, {older.name})")


def test_edited_metadata_byte_in_the_newest_resumes_from_the_previous(run: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    older, newest = list_checkpoints(run / "checkpoints")
    field = b'\\"step\\": 1'
    newest.write_bytes(newest.read_bytes().replace(field, field[:-1] + b"0", 1))
    code, err = _cli(capsys, *_resume(run))
    assert code == 0
    assert "checkpoint is corrupted (tensor or metadata checksum mismatch)" in err
    assert f"damaged, falling back to the previous checkpoint {older.name}" in err
    assert RunFolder(run).read_summary().status == "finished"


@pytest.mark.parametrize(("flags", "message"), [
    (["--max-steps", "0"], "error: --max-steps must be at least 1, got 0"),
    (["--time-limit", "-1"], "error: --time-limit must be a positive number of minutes, got -1"),
    (["--time-limit", "0"], "error: --time-limit must be a positive number of minutes, got 0"),
    (["--threads", "-2"], "error: --threads must be at least 1, got -2"),
])
def test_limits_that_mean_nothing_are_refused(run: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                              message: str) -> None:
    _refused(capsys, run, _resume(run, *flags), message)


def test_two_concurrent_writers_one_runs_the_other_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", SPEC, "--epochs", "1", "--subset", "64", "--set", "batch_size=32", "--data-dir", str(SHARED),
            "--out", str(tmp_path), "--name", "shared", *QUIET]
    first = subprocess.Popen([sys.executable, "-m", "archlang", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    lock = tmp_path / "shared" / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
        assert first.poll() is None and time.monotonic() < deadline, "the first writer never took the lock"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)  # hold it inside its run, lock taken, whatever the machine's speed
    try:
        code, err = _cli(capsys, *argv)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert code == 2
    assert f"error: run folder {tmp_path / 'shared'} is in use by process {first.pid}" in err
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err.decode()
    assert RunFolder(tmp_path / "shared").read_summary().status == "finished"
