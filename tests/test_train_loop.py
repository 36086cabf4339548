"""Training runs on a few hundred real MNIST images: loss falls, resume is exact, the run
folder is complete, damaged checkpoints and NaN losses are clear outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import archlang
from archlang.errors import ArchlangError
from archlang.runs import RunFolder
from archlang.runs.checkpoint import list_checkpoints
from archlang.train import TrainOptions, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="../shared/data/MNIST absent")

def read_metrics(folder: Path) -> list[dict]:
    return [row.as_dict() for row in RunFolder(folder).read_metrics()]

SPEC = "mlp(depth=4, width=24, block=gated(residual))"
FAST = {"epochs": 2, "batch_size": 32}


def _run(tmp: Path, name: str, *, spec: str = SPEC, overrides: dict[str, Any] | None = None, resume: Path | None = None,
         **options: Any) -> Path:
    opts = TrainOptions(progress=False, log=lambda message: None, **options)
    return train(archlang.compile_spec(spec), overrides=overrides or FAST, out=tmp, name=name, resume=resume,
                 data_dir=SHARED, subset=256, options=opts)


def _without_time(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("runs"), "straight")


def test_loss_falls_and_run_folder_is_complete(straight: Path) -> None:
    history = read_metrics(straight)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    for record in history:
        assert {"epoch", "train_loss", "train_error", "test_error", "lr", "seconds"} <= record.keys()
        assert 0.0 <= record["test_error"] <= 100.0
        assert len(record["gates_k"]) == 2  # depth 4 = 2 gated residual blocks
    for name in ("spec.arch", "spec.canonical.arch", "recipe.given.yaml", "recipe.resolved.yaml", "run.json",
                 "metrics.jsonl", "summary.json", "model.safetensors", "curves.png", "gates.png"):
        assert (straight / name).is_file(), name
    run = json.loads((straight / "run.json").read_text())
    assert len(run["spec_hash"]) == 64 and len(run["recipe_hash"]) == 64 and run["recipe_name"] == "gated-mnist"
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["final_test_error"] == history[-1]["test_error"]
    assert len(list_checkpoints(straight / "checkpoints")) == 2


def test_interrupted_and_resumed_run_equals_straight_run(straight: Path, tmp_path: Path) -> None:
    folder = _run(tmp_path, "pieces", max_steps=3)  # stops inside epoch 1 (8 steps per epoch)
    assert json.loads((folder / "summary.json").read_text())["status"] == "stopped"
    folder = _run(tmp_path, "pieces", resume=folder, max_steps=9)  # crosses into epoch 2
    folder = _run(tmp_path, "pieces", resume=folder)
    assert _same_weights(straight, folder)
    assert _without_time(read_metrics(folder)) == _without_time(read_metrics(straight))


def test_damaged_newest_checkpoint_falls_back_to_previous(straight: Path, tmp_path: Path) -> None:
    folder = _run(tmp_path, "damaged", max_steps=5)
    folder = _run(tmp_path, "damaged", resume=folder, max_steps=1)
    newest = list_checkpoints(folder / "checkpoints")[-1]
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0xFF  # a flipped bit in the tensor data: caught by the checksum
    newest.write_bytes(bytes(data))
    warnings: list[str] = []
    train(archlang.compile_spec(SPEC), overrides=FAST, resume=folder, data_dir=SHARED, subset=256,
          options=TrainOptions(progress=False, log=warnings.append))
    assert any("checksum mismatch" in w and newest.name in w for w in warnings)
    assert _same_weights(straight, folder)


def test_all_checkpoints_damaged_is_a_clear_error(tmp_path: Path) -> None:
    folder = _run(tmp_path, "ruined", max_steps=3)
    for path in list_checkpoints(folder / "checkpoints"):
        path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ArchlangError) as info:
        _run(tmp_path, "ruined", resume=folder)
    assert "every checkpoint is damaged" in info.value.render()


def test_resume_refuses_a_different_recipe_or_spec(tmp_path: Path) -> None:
    folder = _run(tmp_path, "refuse", max_steps=2)
    with pytest.raises(ArchlangError, match=r"recipe differs.*lr changed"):
        _run(tmp_path, "refuse", resume=folder, overrides={**FAST, "lr": 0.01})
    with pytest.raises(ArchlangError, match="spec differs"):
        _run(tmp_path, "refuse", resume=folder, spec="mlp(depth=4, width=25, block=gated(residual))")
    with pytest.raises(ArchlangError, match="already exists"):
        _run(tmp_path, "refuse")


class _PoisonAfter(nn.Module):
    """Wraps a network; from the n-th training forward on, its output is NaN."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.n:
                return out * float("nan")
        return out


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_checkpoint(tmp_path: Path) -> None:
    compiled = archlang.compile_spec(SPEC)
    build = compiled.build
    compiled.build = lambda: _PoisonAfter(build(), n=11)  # type: ignore[method-assign]
    with pytest.raises(ArchlangError) as info:
        train(compiled, overrides=FAST, out=tmp_path, name="nan", data_dir=SHARED, subset=256,
              options=TrainOptions(progress=False, log=lambda message: None))
    text = info.value.render()
    assert "loss became nan at epoch 2, step 3" in text and "ckpt-e00001-s0000000" in text
    folder = tmp_path / "nan"
    assert json.loads((folder / "summary.json").read_text())["status"] == "diverged"
    assert [p.name for p in list_checkpoints(folder / "checkpoints")][-1] == "ckpt-e00001-s0000000.safetensors"


def test_unwritable_run_folder_is_reported_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ArchlangError, match="not writable"):
        _run(blocker, "x")


def test_cli_train_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from archlang.cli import main

    assert main(["train", "mlp(depth=2, width=16)", "--recipe", "gated-mnst"]) == 2
    assert "did you mean 'gated-mnist'?" in capsys.readouterr().err
    code = main(["train", "mlp(depth=2, width=16)", "--epochs", "1", "--subset", "64", "--data-dir", str(SHARED),
                 "--out", str(tmp_path), "--name", "cli", "--no-progress", "--set", "batch_size=32"])
    assert code == 0 and len(read_metrics(tmp_path / "cli")) == 1
    assert main(["train", "--resume", str(tmp_path / "cli"), "--no-progress"]) == 0  # nothing left: finishes at once


def test_loss_read_back_every_n_steps_trains_the_same_weights(straight: Path, tmp_path: Path) -> None:
    folder = _run(tmp_path, "sync3", sync_every=3)  # 8 steps an epoch: read-backs at 3, 6, 8
    assert _same_weights(straight, folder)
    ours, theirs = read_metrics(folder), read_metrics(straight)
    assert [r["test_error"] for r in ours] == [r["test_error"] for r in theirs]
    assert [r["train_error"] for r in ours] == [r["train_error"] for r in theirs]
    assert [r["train_loss"] for r in ours] == pytest.approx([r["train_loss"] for r in theirs], rel=1e-12)


def test_run_json_records_precision_and_environment(straight: Path) -> None:
    env = RunFolder(straight).read_info().environment
    assert env["matmul_precision"] == "highest" and env["cudnn_tf32"] is False and env["cuda_matmul_tf32"] is False
    assert env["torch"] == torch.__version__ and env["archlang"] == archlang.__version__
    assert {"device_name", "cuda", "cudnn", "git_commit", "argv"} <= env.keys()


def test_bf16_autocast_trains_and_differs_from_fp32(straight: Path, tmp_path: Path) -> None:
    folder = _run(tmp_path, "bf16", overrides={**FAST, "epochs": 1}, bf16=True)
    assert RunFolder(folder).read_info().options["bf16"] is True
    [row] = read_metrics(folder)
    assert 0.0 < row["train_loss"] < 10.0
    first = read_metrics(straight)[0]
    assert row["train_loss"] != first["train_loss"]  # autocast really ran in bf16


def test_compile_runs_the_network_through_torch_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Dynamo with its "eager" backend: the graph capture of training and evaluation is exercised,
    # without inductor's C++ build (minutes on a busy CPU).
    real, calls = torch.compile, []

    def eager(module: nn.Module, **kwargs: Any) -> nn.Module:
        calls.append(type(module).__name__)
        return real(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager)
    folder = _run(tmp_path, "compiled", overrides={**FAST, "epochs": 1}, compile=True)
    assert calls and RunFolder(folder).read_summary().status == "finished"


def test_compile_that_cannot_work_is_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(module: nn.Module, **kwargs: Any) -> nn.Module:
        raise RuntimeError("Dynamo is not supported on Python 3.99+")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(ArchlangError) as info:
        _run(tmp_path, "nocompile", overrides={**FAST, "epochs": 1}, compile=True)
    assert info.value.message == ("--compile: torch.compile is not available here "
                                  "(Dynamo is not supported on Python 3.99+)")


def test_compile_failing_at_the_first_step_is_one_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.compile

    def no_compiler(gm: Any, example_inputs: Any) -> Any:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: real(module, backend=no_compiler))
    with pytest.raises(ArchlangError) as info:
        _run(tmp_path, "nocc", overrides={**FAST, "epochs": 1}, compile=True)
    assert info.value.message == ("--compile: torch.compile failed (backend='no_compiler' raised: "
                                  "RuntimeError: no C++ compiler found)")
