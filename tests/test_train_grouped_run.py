"""`archlang train --seeds`: one process, one ordinary run folder per seed, each equal to its single run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from threads import one_thread  # noqa: F401 (autouse: one torch thread in this module, restored after it)
from torch._dynamo.testing import CompileCounterWithBackend

import archlang
from archlang.cli import main
from archlang.errors import ArchlangError
from archlang.runs.checkpoint import list_checkpoints, list_grouped
from archlang.train import TrainOptions, train
from archlang.train.grouped_run import parse_seeds, train_grouped

SPEC = "mlp(depth=4, width=24, block=gated(residual))"
# SGD with momentum and weight decay, 4 steps an epoch on tiny_mnist's 64 images.
RECIPE = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "weight_decay": 1e-4, "epochs": 2, "batch_size": 16}


def _options(**kw: Any) -> TrainOptions:
    return TrainOptions(progress=False, log=lambda message: None, threads=1, **kw)


def _grouped(data: Path, out: Path, name: str, seeds: list[int] | None = None, resume: Path | None = None,
             **kw: Any) -> list[Path]:
    return train_grouped(archlang.compile_spec(SPEC), seeds, overrides=RECIPE, out=out, name=name, resume=resume,
                         data_dir=data, options=_options(**kw))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _rows(folder: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_two_seeds_equal_two_single_runs_and_analyses_read_them(tiny_mnist: Path, tmp_path: Path, capsys) -> None:
    folders = _grouped(tiny_mnist, tmp_path, "g", [0, 1])
    assert [f.name for f in folders] == ["g-seed0", "g-seed1"]
    for seed, folder in enumerate(folders):
        single = train(archlang.compile_spec(SPEC), overrides={**RECIPE, "seed": seed}, out=tmp_path,
                       name=f"single{seed}", data_dir=tiny_mnist, options=_options())
        mine, theirs = _weights(folder), _weights(single)
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=0, msg=key)
        for a, b in zip(_rows(folder), _rows(single), strict=True):
            assert a["epoch"] == b["epoch"] and a["lr"] == b["lr"] and a["test_error"] == b["test_error"]
            assert a["gates_k"] == pytest.approx(b["gates_k"], abs=1e-5)
        info = json.loads((folder / "run.json").read_text())
        assert info["group"] == {"seeds": [0, 1], "folders": ["g-seed0", "g-seed1"]}
        assert json.loads((folder / "summary.json").read_text())["status"] == "finished"
    assert len(list_grouped(folders[0] / "checkpoints")) == 2 and not list_checkpoints(folders[0] / "checkpoints")
    capsys.readouterr()
    assert main(["gates", str(folders[1])]) == 0
    assert "4.gate" in capsys.readouterr().out


def test_stopped_and_resumed_group_equals_straight_group(tiny_mnist: Path, tmp_path: Path) -> None:
    straight = _grouped(tiny_mnist, tmp_path, "straight", [3, 5])
    pieces = _grouped(tiny_mnist, tmp_path, "pieces", [3, 5], max_steps=3)  # inside epoch 1 (4 steps)
    assert json.loads((pieces[1] / "summary.json").read_text())["status"] == "stopped"
    assert not (pieces[1] / "model.safetensors").exists()
    _analyses_read_each_stopped_copy(pieces)
    _grouped(tiny_mnist, tmp_path, "pieces", resume=pieces[1], max_steps=3)  # any member resumes the group
    assert main(["train", "--resume", str(pieces[0]), "--no-progress", "--threads", "1", "--data-dir",
                 str(tiny_mnist)]) == 0  # the CLI finds the group in run.json
    for a, b in zip(straight, pieces, strict=True):
        wa, wb = _weights(a), _weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), a.name
        assert _rows(a) == _rows(b)
        assert json.loads((b / "summary.json").read_text())["status"] == "finished"


def _analyses_read_each_stopped_copy(folders: list[Path]) -> None:
    """A stopped copy's weights are its slice of the group's newest grouped checkpoint, as a stopped
    single run's are its newest checkpoint: every analysis reads it."""
    from archlang.runs import load_run
    from archlang.runs.checkpoint import read_grouped

    newest = read_grouped(list_grouped(folders[0] / "checkpoints")[-1])
    for i, folder in enumerate(folders):
        mine = load_run(str(folder)).model.state_dict()
        assert mine.keys() == newest.model.keys()
        assert all(torch.equal(mine[k], newest.model[k][i]) for k in mine), folder.name
    assert main(["gates", str(folders[1])]) == 0


def test_unsupported_kind_is_one_message_exit_2(tiny_mnist: Path, tmp_path: Path, capsys) -> None:
    code = main(["train", "diracnet(depth=10, k=1)", "--seeds", "2", "--out", str(tmp_path), "--data-dir",
                 str(tiny_mnist)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "error: grouped training (several copies in one process) does not support ncrelu layers" in err
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # refused before any run folder


def test_momentum_resets_and_caffe_multipliers_equal_single_runs(tiny_mnist: Path, tmp_path: Path) -> None:
    """wrn-cifar's reset at each lr drop (epoch 1 of 3 here, and epoch 2) and Caffe's multipliers,
    through the grouped trainer: each seed's folder holds its single run's weights and metrics."""
    spec = "mlp(depth=4, width=16, block=residual)"
    recipe = {**RECIPE, "epochs": 3, "schedule": "multistep", "milestones": [1, 2], "gamma": 0.2,
              "momentum_reset": True, "bias_lr_mult": 2.0, "classifier_decay_mult": 10.0}
    folders = train_grouped(archlang.compile_spec(spec), [0, 1], overrides=recipe, out=tmp_path, name="g",
                            data_dir=tiny_mnist, options=_options())
    for seed, folder in enumerate(folders):
        single = train(archlang.compile_spec(spec), overrides={**recipe, "seed": seed}, out=tmp_path,
                       name=f"single{seed}", data_dir=tiny_mnist, options=_options())
        mine, theirs = _weights(folder), _weights(single)
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=0, msg=key)
        for a, b in zip(_rows(folder), _rows(single), strict=True):
            assert a["lr"] == b["lr"] and a["test_error"] == b["test_error"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)


def test_seed_lists_and_their_errors() -> None:
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("3,5,8") == [3, 5, 8]
    assert parse_seeds("7,") == [7]
    for text, message in (("x", "--seeds takes a count N or a list like 3,5,8, not 'x'"),
                          ("0", "--seeds needs 1 to 256 distinct non-negative seeds, got '0'"),
                          ("1,1", "--seeds needs 1 to 256 distinct non-negative seeds, got '1,1'")):
        with pytest.raises(ArchlangError) as err:
            parse_seeds(text)
        assert err.value.message == message


def test_seed_override_and_non_sgd_recipes_are_refused(tiny_mnist: Path, tmp_path: Path) -> None:
    with pytest.raises(ArchlangError) as err:
        train_grouped(archlang.compile_spec(SPEC), [0, 1], overrides={"seed": 4}, out=tmp_path, data_dir=tiny_mnist,
                      options=_options())
    assert err.value.message == "--seeds sets each copy's seed: drop --seed (or seed=) from the overrides"
    with pytest.raises(ArchlangError) as err:
        train_grouped(archlang.compile_spec(SPEC), [0, 1], overrides={**RECIPE, "optimizer": "adam"}, out=tmp_path,
                      name="adam", data_dir=tiny_mnist, options=_options())
    assert err.value.message == "grouped training steps sgd or nadam recipes, not adam"
    with pytest.raises(ArchlangError) as err:  # the loaders would otherwise leave it out silently
        train_grouped(archlang.compile_spec(SPEC), [0, 1], overrides={**RECIPE, "normalize": "gcn"}, out=tmp_path,
                      name="gcn", data_dir=tiny_mnist, options=_options())
    assert err.value.message == "grouped training does not apply normalize=gcn yet"
    assert not [p for p in tmp_path.iterdir() if p.name != "data"]  # refused before any folder
    with pytest.raises(ArchlangError) as err:
        train_grouped(archlang.compile_spec(SPEC), [0, 1], out=tmp_path, options=_options(bf16=True, compile=True))
    assert err.value.message == "--seeds does not take --bf16 (grouped runs are fp32 and contiguous)"


def test_damaged_grouped_checkpoint_is_caught_and_the_previous_one_used(tmp_path: Path) -> None:
    from archlang.runs import Progress, Totals
    from archlang.runs import rng as run_rng
    from archlang.runs.checkpoint import latest_good_grouped, read_grouped, write_grouped

    def progress(step: int) -> list[Progress]:
        return [Progress(epoch=0, step=step, totals=Totals(), history=[], run_hash="ab" * 32, rng=[run_rng.capture()])]

    write_grouped(tmp_path, {"w": torch.ones(2, 3)}, {"step": torch.tensor(1)}, progress(1))
    newest = write_grouped(tmp_path, {"w": torch.zeros(2, 3)}, {"step": torch.tensor(2)}, progress(2))
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last tensor's bytes
    newest.write_bytes(bytes(data))
    with pytest.raises(ArchlangError) as err:
        read_grouped(newest)
    assert err.value.message == "grouped checkpoint is corrupted (tensor or metadata checksum mismatch)"
    warnings: list[str] = []
    state = latest_good_grouped(tmp_path, warn=warnings.append)
    assert state is not None and state.progress[0].step == 1 and torch.equal(state.model["w"], torch.ones(2, 3))
    assert len(warnings) == 1 and "falling back to the previous grouped checkpoint" in warnings[0]


@pytest.mark.parametrize("seeds", [None, "2"])
def test_a_last_batch_of_one_image_under_batch_norm_is_refused_before_training(tiny_mnist: Path, tmp_path: Path,
                                                                               capsys, seeds: str | None) -> None:
    flags = ["--subset", "33", "--set", "batch_size=32", "--epochs", "1", "--data-dir", str(tiny_mnist), "--out",
             str(tmp_path / "runs"), "--name", "bn", "--no-progress", *(["--seeds", seeds] if seeds else [])]
    assert main(["train", SPEC, *flags]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("error: 33 training images at batch size 32: the last batch of each epoch "
                                       "holds 1 image, and batch norm (layer 2) cannot train on one value per channel") in err
    assert not any((tmp_path / "runs").iterdir())  # no run started, and no folder left for one
    # Folders that existed before the call (here: made by hand, empty) are not this call's to remove.
    names = ["bn"] if seeds is None else ["bn-seed0", "bn-seed1"]
    for name in names:
        (tmp_path / "runs" / name).mkdir()
    assert main(["train", SPEC, *flags]) == 2
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == names
    # A convolution's batch norm sees 1 x H x W values of the last image: that trains as usual.
    from archlang.train.plan import check_last_batch

    check_last_batch(archlang.compile_spec("wrn(depth=10, k=1)"), 32, 33)
    with pytest.raises(ArchlangError, match="every batch holds 1 image"):
        check_last_batch(archlang.compile_spec(SPEC), 1, 64)


def test_flags_a_call_would_drop_are_refused(tmp_path: Path, capsys) -> None:
    assert main(["train", SPEC, "--grouped", "--out", str(tmp_path)]) == 2
    assert "error: --grouped trains the points of a sweep (a spec with {a, b} sets) in groups; this is one network" \
        in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "g-seed0"), "--seeds", "5"]) == 2
    assert ("error: --resume continues a run (or its whole group) with the seeds it was started with; it does not "
            "take --seeds") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_compiled_grouped_run_equals_the_eager_one(tiny_mnist: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--seeds with --compile: the copies' blocks run through torch.compile (here dynamo with
    aot_eager: forward and backward traced, no C++ build) and the run folders hold the eager run's
    weights to rounding; a compiler failing at the first step is one message."""
    eager = _grouped(tiny_mnist, tmp_path, "eager", [0, 1])
    real, calls, counter = torch.compile, [], CompileCounterWithBackend("aot_eager")

    def traced(function: Any, **options: Any) -> Any:
        calls.append(function.__code__.co_name)
        return real(function, backend=counter)

    monkeypatch.setattr(torch, "compile", traced)
    compiled = _grouped(tiny_mnist, tmp_path, "compiled", [0, 1], compile=True)
    assert calls == ["run_blocks_0"] and counter.frame_count == 1  # SGD: no compiled NAdam; the chunk ran
    for a, b in zip(compiled, eager):
        mine, theirs = _weights(a), _weights(b)
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=0, msg=key)

    def no_compiler(gm: Any, example_inputs: Any) -> Any:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda function, **kw: real(function, backend=no_compiler))
    with pytest.raises(ArchlangError) as info:
        _grouped(tiny_mnist, tmp_path, "nocc", [0, 1], compile=True)
    assert info.value.message == ("--compile: torch.compile failed (backend='no_compiler' raised: "
                                  "RuntimeError: no C++ compiler found)")
