"""archlang.runs: the run folder's lock and records, verified typed checkpoints, one RNG format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from archlang.errors import ArchlangError
from archlang.runs import Progress, RunFolder, Totals
from archlang.runs import rng as run_rng
from archlang.runs.checkpoint import latest_good_checkpoint, list_checkpoints, read_checkpoint, snapshot, write_snapshot
from archlang.train.checkpointing import CheckpointWriter, load_into

REPO = Path(__file__).resolve().parents[1]
HASH = "a" * 64


def _parts(width: int = 4) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()  # momentum buffers exist: the optimizer state has tensors
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


def _progress(epoch: int, step: int, run_hash: str = HASH) -> Progress:
    return Progress(epoch=epoch, step=step, totals=Totals(loss_sum=1.5, wrong=2, seen=10, seconds=0.5), history=[],
                    run_hash=run_hash, rng=[run_rng.capture()])


def _save(folder: Path, epoch: int, step: int, width: int = 4, run_hash: str = HASH) -> Path:
    model, opt, sched = _parts(width)
    return write_snapshot(folder, snapshot(model, opt, sched, _progress(epoch, step, run_hash), copy=False))


def test_checkpoint_round_trip_is_typed_and_exact(tmp_path: Path) -> None:
    path = _save(tmp_path, 1, 3)
    state = read_checkpoint(path)
    model, opt, _ = _parts()
    assert state.progress.step == 3 and state.progress.totals.wrong == 2 and state.progress.run_hash == HASH
    assert all(torch.equal(state.model[k], v) for k, v in model.state_dict().items())
    fresh, fresh_opt, fresh_sched = _parts()
    load_into(state, fresh, fresh_opt, fresh_sched)
    assert torch.equal(fresh_opt.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])


def test_an_edited_metadata_byte_is_damage_and_falls_back(tmp_path: Path) -> None:
    _save(tmp_path, 0, 3)
    newest = _save(tmp_path, 0, 4)
    data = newest.read_bytes()
    field = b'\\"step\\": 4'  # JSON inside the header's JSON
    assert data.count(field) == 1
    newest.write_bytes(data.replace(field, field[:-1] + b"7"))  # same length: the file still parses
    warnings: list[str] = []
    state = latest_good_checkpoint(tmp_path, warn=warnings.append)
    assert state is not None and state.progress.step == 3
    assert len(warnings) == 1 and "tensor or metadata checksum mismatch" in warnings[0]
    assert "damaged, falling back to the previous checkpoint ckpt-e00000-s0000003.safetensors" in warnings[0]


def test_checkpoints_written_before_the_metadata_digest_still_load() -> None:
    path = REPO / "reproduce/runs/cifar-resnet/resnet-32/checkpoints/ckpt-e00005-s0000286.safetensors"
    if not path.is_file():
        pytest.skip("committed format-1 checkpoint absent")
    state = read_checkpoint(path)
    info = RunFolder.open(path.parents[1]).read_info()
    assert state.progress.epoch == 5 and state.progress.run_hash == info.run_hash and len(state.progress.rng) == 1


@pytest.mark.parametrize(("width", "message"), [
    (5, "checkpoint does not fit this network (0.weight is torch.float32 (5, 3), the network's is torch.float32 (4, 3))"),
])
def test_a_checkpoint_that_does_not_fit_is_one_error(tmp_path: Path, width: int, message: str) -> None:
    state = read_checkpoint(_save(tmp_path, 0, 1, width=width))
    with pytest.raises(ArchlangError) as info:
        load_into(state, *_parts(4))
    assert info.value.message == message


def test_optimizer_state_that_does_not_fit_is_one_error(tmp_path: Path) -> None:
    state = read_checkpoint(_save(tmp_path, 0, 1))
    model, _, _ = _parts()
    adam = torch.optim.Adam([{"params": [model[0].weight]}, {"params": [model[0].bias, model[2].weight, model[2].bias]}])
    with pytest.raises(ArchlangError) as info:
        load_into(state, model, adam, torch.optim.lr_scheduler.LambdaLR(adam, lambda e: 1.0))
    assert info.value.message == ("checkpoint's optimizer or scheduler state does not fit "
                                  "(loaded state dict has a different number of parameter groups)")


def test_background_writer_keeps_one_write_in_flight_and_flushes(tmp_path: Path) -> None:
    model, opt, sched = _parts()
    writer = CheckpointWriter(tmp_path, background=True)
    for step in range(1, 4):
        expected = model[0].weight.detach().clone()
        writer.save(model, opt, sched, _progress(0, step))
        model[0].weight.data.add_(1.0)  # training goes on: the snapshot was copied
    writer.close()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-e00000-s0000002.safetensors",
                                                           "ckpt-e00000-s0000003.safetensors"]
    saved = read_checkpoint(list_checkpoints(tmp_path)[-1]).model["0.weight"]
    assert torch.equal(saved, expected) and not torch.equal(saved, model[0].weight.detach())


def test_rng_round_trip_and_cuda_states_of_missing_gpus_are_skipped() -> None:
    state = run_rng.capture()
    first = torch.rand(3)
    messages: list[str] = []
    run_rng.restore(state, messages.append)
    assert torch.equal(torch.rand(3), first) and messages == []
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = state.model_copy(update={"cuda": [(count, state.torch), (count + 1, state.torch)]})  # GPUs not here
    run_rng.restore(missing, messages.append)
    assert messages == [(f"warning: the checkpoint holds the CUDA random state of 2 GPU(s), this machine has {count}: "
                        "restored 0, the others' dropout draws start afresh")]


def test_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    first = RunFolder.create(tmp_path / "r")
    with pytest.raises(ArchlangError) as info:
        RunFolder.create(tmp_path / "r")
    assert info.value.message == f"run folder {tmp_path / 'r'} is in use by process {os.getpid()}"
    first.unlock()
    # A lock file left by a process that died: its flock died with it, so the next run takes over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / ".lock").write_text(dead.stdout)
    taken = RunFolder.create(tmp_path / "s")
    assert (tmp_path / "s" / ".lock").read_text() == f"{os.getpid()}\n"
    taken.unlock()


def test_records_are_validated_when_read(tmp_path: Path) -> None:
    run = RunFolder.create(tmp_path / "r")
    (run.path / "run.json").write_text(json.dumps({"spec_hash": HASH, "recipe_hash": HASH, "run_hash": HASH, "subset": -3}))
    with pytest.raises(ArchlangError) as info:
        run.read_info()
    assert info.value.message == "damaged (subset: Input should be greater than 0)"
    (run.path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with pytest.raises(ArchlangError, match=r"damaged \(train_loss: Field required\)"):
        run.read_metrics()
    run.unlock()


def test_tf32_is_off_unless_asked_and_recorded() -> None:
    from archlang.train.options import TrainOptions, configure_backends, environment

    before = torch.get_float32_matmul_precision()
    try:
        configure_backends(torch.device("cpu"), TrainOptions())
        off = environment(torch.device("cpu"))
        configure_backends(torch.device("cpu"), TrainOptions(tf32=True))
        on = environment(torch.device("cpu"))
    finally:
        configure_backends(torch.device("cpu"), TrainOptions())
        torch.set_float32_matmul_precision(before)
    assert (off["matmul_precision"], off["cudnn_tf32"], off["cuda_matmul_tf32"]) == ("highest", False, False)
    assert (on["matmul_precision"], on["cudnn_tf32"], on["cuda_matmul_tf32"]) == ("high", True, True)


def test_train_flags_parse_tf32_and_keep_a_zero_time_limit() -> None:
    from archlang.cli import _registrations, build_parser

    args = build_parser(_registrations()).parse_args(["train", "x.arch", "--tf32", "--time-limit", "0"])
    assert args.tf32 is True and args.time_limit == 0.0


def test_reading_run_folders_does_not_import_torch() -> None:
    code = "import sys, archlang.runs, archlang.train.command; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "False"


def test_a_group_members_folder_name_is_name_seed_s_and_parses_back() -> None:
    from archlang.runs import member_name, parse_member_name

    # the spelling of the committed folders (reproduce/runs/gated-mnist/gated-d10-seed3): public
    assert member_name("gated-d10", 3) == "gated-d10-seed3"
    for name, seed in (("gated-d10", 3), ("a-seed1", 12), ("x", 0)):
        assert parse_member_name(member_name(name, seed)) == (name, seed)
    for other in ("gated-d10", "g-seedling", "g-seed01", "g-seed+1", "g-seed-1", "g-seed\u00b2", "-seed1", "g-seed"):
        assert parse_member_name(other) is None, other
