"""What a run tells (issue 13): resuming with the recorded flags, a finished run, --eval-subset, the
start-up header, plain progress lines, CSV and TensorBoard logs, and the line saying why it stopped."""

from __future__ import annotations

import json
from pathlib import Path

from archlang.cli import main

SPEC = "mlp(depth=2, width=8)"


def _train(tmp_path: Path, data: Path, *flags: str) -> int:
    return main(["train", SPEC, "--subset", "64", "--data-dir", str(data), "--out", str(tmp_path), "--name", "r",
                 "--no-progress", *flags])


def test_resume_with_the_recorded_flags_is_accepted_and_a_changed_one_refused(tmp_path, tiny_mnist, capsys):
    assert _train(tmp_path, tiny_mnist, "--epochs", "2", "--seed", "0", "--batch-size", "32", "--max-steps", "1") == 0
    run = tmp_path / "r"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--seed", "1", "--no-progress"]) == 2
    assert "cannot resume: the recipe differs from this run's (seed changed)" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--seed", "0", "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
