"""reproduce/park.py: which checkpoints travel to the next machine through git, and which stop travelling."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from archlang.runs import Progress, RunFolder, RunIdentity, Summary, Totals
from archlang.runs import rng as run_rng
from archlang.runs.checkpoint import snapshot, write_snapshot

REPRODUCE = Path(__file__).resolve().parents[1] / "reproduce"


@pytest.fixture
def park(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPRODUCE))
    import park

    return park


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _checkpoints(path: Path, epochs: tuple[int, ...]) -> list[Path]:
    """One checkpoint per epoch in `epochs` in the run folder at `path`, as the trainer writes them."""
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    totals = Totals(loss_sum=1.0, wrong=0, seen=1, seconds=0.1)
    return [write_snapshot(RunFolder(path).checkpoints, snapshot(model, opt, sched, Progress(
        epoch=e, step=e, totals=totals, history=[], run_hash="0" * 64, rng=[run_rng.capture()]), copy=False))
        for e in epochs]


def _run(path: Path, status: str | None, epochs: tuple[int, ...]) -> list[Path]:
    """A run folder ended `status` (None: stopped mid-run) with one checkpoint per epoch in `epochs`."""
    run = RunFolder.create(path)
    run.write_identity(RunIdentity("mlp()", "mlp()", "", {"seed": 0, "epochs": 9}, "0" * 64, None), {})
    if status is not None:
        run.write_summary(Summary(status=status, epochs_done=9, epochs=9))
    run.unlock()
    return _checkpoints(path, epochs)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("checkpoints/\n")
    return tmp_path


def _tracked(repo: Path) -> set[str]:
    return {Path(n).name for n in _git(repo, "ls-files").split() if "checkpoints" in n}


def test_the_newest_good_checkpoint_of_each_unfinished_run_is_parked_and_no_other(park, repo: Path) -> None:
    runs = repo / "runs"
    _, stopped = _run(runs / "stopped", None, (3, 4))
    damaged_older, damaged = _run(runs / "damaged" / "seed0", None, (5, 6))
    damaged.write_bytes(damaged.read_bytes()[:-7] + b"garbage")  # a kill mid-write on the old machine
    _run(runs / "finished", "finished", (8, 9))
    todo = park.plan(repo, runs)
    assert sorted(p.name for p in todo.park) == sorted([stopped.name, damaged_older.name])
    assert todo.release == []
    park.stage(repo, todo)
    assert _tracked(repo) == {stopped.name, damaged_older.name}


def test_parked_checkpoints_a_run_trained_past_or_finished_are_released(park, repo: Path) -> None:
    runs = repo / "runs"
    (parked,) = _run(runs / "goes-on", None, (2,))
    (done,) = _run(runs / "ends", None, (7,))
    park.stage(repo, park.plan(repo, runs))
    _git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "park")
    # the next session: one run trains 2 more epochs, the other finishes
    newer = _run(runs / "goes-on-too", None, (1,))  # an unrelated new run beside them
    later = _checkpoints(runs / "goes-on", (3, 4))
    assert not parked.exists()  # the writer keeps the newest two
    RunFolder(runs / "ends").write_summary(Summary(status="finished", epochs_done=9, epochs=9))
    todo = park.plan(repo, runs)
    assert sorted(p.name for p in todo.park) == sorted([later[-1].name, newer[0].name])
    assert sorted(p.name for p in todo.release) == sorted([parked.name, done.name])
    park.stage(repo, todo)
    assert _tracked(repo) == {later[-1].name, newer[0].name}
    assert done.exists()  # released from git, never deleted from the machine


def test_a_run_without_a_good_checkpoint_parks_nothing(park, repo: Path) -> None:
    runs = repo / "runs"
    (only,) = _run(runs / "broken", None, (1,))
    only.write_bytes(b"not a checkpoint")
    assert park.plan(repo, runs).park == []
