"""--flush-denormal: it reaches torch (on the threads that compute), is recorded in run.json, a resume
with the other setting is refused, the flag parses and travels to a sweep's points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archlang.cli import _registrations, build_parser, main
from archlang.launch.command import forwarded_flags
from archlang.train.options import TrainOptions, configure_threads, denormals_kept

REPO = Path(__file__).resolve().parents[1]
SPEC = "mlp(depth=2, width=8, block=plain, bn=false)"


def _denormals(n: int) -> torch.Tensor:
    """n copies of float32's smallest denormal, made from its bits (no arithmetic that could flush it)."""
    return torch.ones(n, dtype=torch.int32).view(torch.float32)


@pytest.fixture
def float_mode():
    """Flush-to-zero and the thread count are process settings: hand them back as the other tests expect."""
    threads = torch.get_num_threads()
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)


def _denormal_survives() -> bool:
    return (_denormals(1) * 1.0).item() != 0.0


def _tiny_gradient() -> float:
    x = torch.tensor(1.0, requires_grad=True)
    ((x * 1e-20) * 1e-20).backward()  # d/dx = 1e-40: a denormal, computed by autograd's backward
    return x.grad.item()


def test_the_option_flushes_the_main_threads_arithmetic(float_mode) -> None:
    configure_threads(TrainOptions(threads=1))
    assert _denormal_survives() and _tiny_gradient() != 0.0  # off unless asked
    configure_threads(TrainOptions(threads=1, flush_denormal=True))
    assert not _denormal_survives() and denormals_kept() == 0
    assert _tiny_gradient() == 0.0  # autograd's CPU backward runs on this thread: flushed too
    configure_threads(TrainOptions(threads=1))
    assert _denormal_survives() and _tiny_gradient() != 0.0  # off again: the mode is set, not only turned on


def test_intra_op_threads_started_before_the_flag_keep_denormals_and_are_warned_about(float_mode) -> None:
    lines: list[str] = []
    torch.set_num_threads(2)
    (_denormals(1 << 20) * 1.0).sum()  # a parallel op: the intra-op pool runs now, its threads without the flag
    configure_threads(TrainOptions(threads=2, flush_denormal=True, log=lines.append))
    assert (_denormals(1 << 20) * 1.0).count_nonzero() > 0 and not _denormal_survives()
    assert lines == [("warning: --flush-denormal covers the main thread but not all 2 intra-op threads (65536 of "
                      "131072 probe elements kept a denormal): they were started before it; with --threads 1 all the "
                      "work is on the main thread")]


def test_intra_op_threads_started_after_the_flag_inherit_it_and_keep_it_when_it_is_turned_off() -> None:
    # As in `archlang train`, where nothing runs in parallel before the trainer's setup: a fresh process.
    # The second training of the process, without the flag, is warned that the pool's threads still flush.
    code = ("import torch\nfrom archlang.train.options import TrainOptions, configure_threads\n"
            "configure_threads(TrainOptions(threads=2, flush_denormal=True, log=print))\n"
            "tiny = torch.ones(1 << 20, dtype=torch.int32).view(torch.float32)\n"
            "print((tiny * 1.0).count_nonzero().item())\n"
            "configure_threads(TrainOptions(threads=2, log=print))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    assert out.stdout.splitlines() == ["0", ("warning: without --flush-denormal, 65536 of 131072 probe elements were "
                                             "still flushed: intra-op threads started by an earlier --flush-denormal "
                                             "training in this process keep it; with --threads 1 all the work is on "
                                             "the main thread")]


def _train(out: Path, data: Path, *flags: str) -> int:
    return main(["train", SPEC, "--subset", "64", "--data-dir", str(data), "--out", str(out), "--epochs", "2",
                 "--batch-size", "32", "--threads", "1", "--no-progress", *flags])


def test_recorded_and_a_resume_with_the_other_setting_refused(tmp_path, tiny_mnist, capsys, float_mode) -> None:
    assert _train(tmp_path, tiny_mnist, "--name", "on", "--flush-denormal", "--max-steps", "1") == 0
    assert _train(tmp_path, tiny_mnist, "--name", "off", "--max-steps", "1") == 0
    assert _denormal_survives()  # the "off" run after the "on" one in this process computed without flushing
    on, off = tmp_path / "on", tmp_path / "off"
    assert json.loads((on / "run.json").read_text())["options"]["flush_denormal"] is True
    assert json.loads((off / "run.json").read_text())["options"]["flush_denormal"] is False
    capsys.readouterr()
    assert main(["train", "--resume", str(on), "--threads", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume: this run trained with --flush-denormal; resume it the same way" in err
    assert "add --flush-denormal, or start a new run" in err and "Traceback" not in err
    assert main(["train", "--resume", str(off), "--flush-denormal", "--threads", "1", "--no-progress"]) == 2
    assert "this run trained without --flush-denormal" in capsys.readouterr().err
    assert main(["train", "--resume", str(on), "--flush-denormal", "--threads", "1", "--no-progress"]) == 0
    assert json.loads((on / "summary.json").read_text())["status"] == "finished"


def test_a_run_recorded_before_the_option_resumes_without_it(tmp_path, tiny_mnist, float_mode) -> None:
    assert _train(tmp_path, tiny_mnist, "--name", "old", "--max-steps", "1") == 0
    info = json.loads((tmp_path / "old" / "run.json").read_text())
    del info["options"]["flush_denormal"]
    (tmp_path / "old" / "run.json").write_text(json.dumps(info))
    assert main(["train", "--resume", str(tmp_path / "old"), "--flush-denormal", "--threads", "1", "--no-progress"]) == 2
    assert main(["train", "--resume", str(tmp_path / "old"), "--threads", "1", "--no-progress"]) == 0


def test_grouped_copies_record_it_and_refuse_the_other_setting(tmp_path, tiny_mnist, capsys, float_mode) -> None:
    assert _train(tmp_path, tiny_mnist, "--name", "g", "--seeds", "2", "--flush-denormal", "--max-steps", "1") == 0
    assert all(json.loads((tmp_path / f"g-seed{s}" / "run.json").read_text())["options"]["flush_denormal"]
               for s in (0, 1))
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "g-seed1"), "--threads", "1", "--no-progress"]) == 2
    assert "this run trained with --flush-denormal" in capsys.readouterr().err


def test_the_flag_parses_travels_to_sweep_points_and_takes_no_value(capsys) -> None:
    parser = build_parser(_registrations())
    args = parser.parse_args(["train", SPEC, "--flush-denormal"])
    assert args.flush_denormal is True and parser.parse_args(["train", SPEC]).flush_denormal is False
    assert "--flush-denormal" in forwarded_flags(args.train_parser, args)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["train", SPEC, "--flush-denormal=yes"])
    assert stop.value.code == 2 and "ignored explicit argument 'yes'" in capsys.readouterr().err
