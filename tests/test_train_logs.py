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


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_header_progress_lines_csv_and_tensorboard_logs(tmp_path, tiny_mnist, capsys):
    gated = "mlp(depth=2, width=8, block=gated(residual))"
    assert main(["train", gated, "--subset", "64", "--data-dir", str(tiny_mnist), "--out", str(tmp_path), "--name", "r",
                 "--epochs", "2", "--batch-size", "16", "--log-every", "2", "--eval-subset", "10"]) == 0
    run = tmp_path / "r"
    err = capsys.readouterr().err.splitlines()
    assert err[:6] == [f"spec         {gated}", "parameters   6,563",
                       "recipe       gated-mnist: 2 epochs, batch 16, lr 0.002, weight decay 0, seed 0",
                       "dataset      mnist: 64 training images, 10 test images", err[4], f"run folder   {run}"]
    assert err[4].startswith("device       cpu, ") and err[6] == f"tensorboard  {run / 'tensorboard'}"
    # stderr is no terminal here: a plain line every 2 steps (4 steps an epoch), and why the run stopped
    assert [line.split(":")[0] for line in err if " step " in line] == \
        ["epoch 1 step 2/4", "epoch 1 step 4/4", "epoch 2 step 2/4", "epoch 2 step 4/4"]
    assert err[-1] == "stopped: finished"
    steps, epochs = _csv(run / "steps.csv"), _csv(run / "epochs.csv")
    assert [r["step"] for r in steps] == ["2", "4", "6", "8"] and [r["step"] for r in epochs] == ["4", "8"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [float(r["test_error"]) for r in epochs] == [m["test_error"] for m in metrics]
    assert {m["test_error"] % 10 for m in metrics} == {0}  # 10 test images: errors in steps of 10%
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("test/error")] == \
        [(4, metrics[0]["test_error"]), (8, metrics[1]["test_error"])]
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]
    assert len(events.Scalars("gates/mean_k")) == 2


def test_stop_line_resume_drops_later_rows_and_a_finished_run_says_so(tmp_path, tiny_mnist, capsys):
    flags = ["--epochs", "2", "--batch-size", "16", "--log-every", "1"]
    assert _train(tmp_path, tiny_mnist, *flags, "--max-steps", "3") == 0
    run = tmp_path / "r"
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"stopped: --max-steps 3 reached; continue with: archlang train --resume {run}"
    with open(run / "steps.csv", "a") as f:  # rows a killed process wrote after its last checkpoint
        f.write("4,1,9.9,99.0,0.002,0.1\n")
    assert main(["train", "--resume", str(run), *flags]) == 0
    assert [r["step"] for r in _csv(run / "steps.csv")] == [str(s) for s in range(1, 9)]
    assert [r["train_loss"] for r in _csv(run / "steps.csv")].count("9.9") == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert out.err.startswith(f"{run} is finished (2 of 2 epochs, final test error ")


def test_without_tensorboard_the_event_files_are_skipped_and_the_header_says_so(tmp_path, monkeypatch):
    import sys

    from archlang.runs import RunFolder
    from archlang.train.logs import TrainLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    lines: list[str] = []
    logs = TrainLog(RunFolder(tmp_path), enabled=True, every=1, plain=False, log=lines.append, resumed_at=None)
    logs.header([("spec", SPEC)])
    assert lines == [f"spec         {SPEC}", "tensorboard  off (tensorboard is not installed: pip install 'archlang[logs]')"]
    logs.step(global_step=1, epoch=0, step=1, steps=4, loss=2.5, error=90.0, lr=0.1, seconds=0.5)
    logs.close("finished", None)
    assert not (tmp_path / "tensorboard").exists()
    assert (tmp_path / "steps.csv").read_text() == "step,epoch,train_loss,train_error,lr,seconds\n1,1,2.5,90.0,0.1,0.5\n"
    assert lines[-1] == "stopped: finished"
