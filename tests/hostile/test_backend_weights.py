"""Hostile weights files (issue 10): each ends in exit 2 with one exact message and no traceback, and
leaves every input file unchanged, or is a documented success. Outputs and analysis flags:
test_backend_outputs.py."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hostile_cli import SPEC, refused
from hostile_cli import model as _model
from hostile_cli import state_bytes as _state_bytes

from archlang.cli import main

WIDER = "seq(input(3, 8, 8), conv(6), bn, relu, global_avgpool, linear(2))"
READ_HINT = "hint: archlang reads .safetensors files and state dicts saved with torch.save(model.state_dict(), path)"
FIT_HINT = "hint: use the spec the weights were trained with"


def _export(weights: Path, out: Path) -> list[str]:
    return ["export", SPEC, "--weights", str(weights), "--torchscript", str(out)]


# ---- weights files -----------------------------------------------------------------------------------


class _System:
    """Unpickling this runs os.system: a weights file must never do that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _bad_weights(tmp: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the message after 'PATH: error: ')."""
    good = _state_bytes(_model().state_dict())
    corrupt = "cannot read the weights: the torch.save file is truncated or corrupted"
    not_weights = "not a weights file (neither safetensors nor torch.save)\n" + READ_HINT
    code = ("refused to load the weights: the file holds pickled objects other than tensors (nothing was run)\n"
            + READ_HINT)
    return {
        "garbage.pt": (bytes(range(7, 256)) * 40, not_weights),
        "zip-garbage.pt": (b"PK\x03\x04" + bytes(range(256)) * 8, corrupt),
        "system.pt": (_state_bytes({"w": _System(tmp / "PWNED")}), code),
        "system-pickle.pt": (pickle.dumps(_System(tmp / "PWNED")), code),
        "list.pt": (_state_bytes([1, 2, 3]), "not a state dict: the file holds a list, not a mapping of names to "
                    "tensors\n" + READ_HINT),
        "ints.pt": (_state_bytes({"0.weight": 3}), "not a state dict: '0.weight' is an int, not a tensor\n"
                    + READ_HINT),
        "truncated.pt": (good[: len(good) // 2], corrupt),
        "empty.pt": (b"", "the weights file is empty"),
        "truncated.safetensors": (_safetensors()[:-40], ("cannot read the weights: the safetensors file is "
                                  "truncated or corrupted")),
        "nan.pt": (_state_bytes({**_model().state_dict(), "0.weight": torch.full((4, 3, 3, 3), float("nan"))}),
                   ("the weights hold NaN or infinite values (first in '0.weight')\n"
                   "hint: the training diverged: use an earlier checkpoint")),
    }


def _safetensors(spec: str = SPEC) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in _model(spec).state_dict().items()})


@pytest.mark.parametrize("name", ["garbage.pt", "zip-garbage.pt", "system.pt", "system-pickle.pt", "list.pt",
                                  "ints.pt", "truncated.pt", "empty.pt", "truncated.safetensors", "nan.pt"])
def test_bad_weights_files_are_one_message(name: str, tmp_path: Path, capsys):
    data, message = _bad_weights(tmp_path)[name]
    (tmp_path / name).write_bytes(data)
    refused(_export(tmp_path / name, tmp_path / "m.ts"), capsys, f"{tmp_path / name}: error: {message}", tmp_path)
    assert not (tmp_path / "PWNED").exists()  # the pickled os.system never ran


@pytest.mark.parametrize("suffix, data", [(".pt", _safetensors), (".safetensors", lambda: _state_bytes(
    _model().state_dict()))])
def test_the_format_is_told_by_content_not_name(suffix: str, data, tmp_path: Path, capsys):
    # documented success: safetensors bytes named .pt (and torch.save bytes named .safetensors) load
    (tmp_path / f"w{suffix}").write_bytes(data())
    assert main(_export(tmp_path / f"w{suffix}", tmp_path / "m.ts")) == 0
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(torch.jit.load(str(tmp_path / "m.ts"))(x), _model()(x))


def _misfit(tmp: Path, name: str, state: dict) -> Path:
    (tmp / name).write_bytes(_state_bytes(state))
    return tmp / name


def test_weights_of_another_shape_name_the_first_tensor(tmp_path: Path, capsys):
    path = _misfit(tmp_path, "wider.pt", _model(WIDER).state_dict())
    refused(_export(path, tmp_path / "m.ts"), capsys, f"{path}: error: the weights do not fit this network: "
            f"'0.weight' is 6x3x3x3 in the file but 4x3x3x3 here (6 tensors differ)\n{FIT_HINT}", tmp_path)


def test_missing_and_extra_tensors_are_named(tmp_path: Path, capsys):
    state = _model().state_dict()
    missing = _misfit(tmp_path, "missing.pt", {k: v for k, v in state.items() if k != "1.running_var"})
    refused(_export(missing, tmp_path / "m.ts"), capsys, f"{missing}: error: the weights do not fit this network: "
            f"'1.running_var' is missing from the file (1 of 8 tensors missing)\n{FIT_HINT}", tmp_path)
    extra = _misfit(tmp_path, "extra.pt", {**state, "9.weight": torch.zeros(2)})
    refused(_export(extra, tmp_path / "m.ts"), capsys, f"{extra}: error: the weights do not fit this network: "
            f"the file has '9.weight', which the network lacks (1 extra tensors)\n{FIT_HINT}", tmp_path)


def test_weights_of_another_architecture(tmp_path: Path, capsys):
    path = _misfit(tmp_path, "wrn.pt", _model("wrn(depth=10, k=1, input=[3, 8, 8])").state_dict())
    refused(_export(path, tmp_path / "m.ts"), capsys, f"{path}: error: the weights do not fit this network: "
            f"'0.weight' is 16x3x3x3 in the file but 4x3x3x3 here (3 tensors differ)\n{FIT_HINT}", tmp_path)


def test_a_megabyte_tensor_name_is_shown_shortened(tmp_path: Path, capsys):
    path = _misfit(tmp_path, "long.pt", {**_model().state_dict(), "x" * 1_000_000: torch.zeros(1)})
    refused(_export(path, tmp_path / "m.ts"), capsys, f"{path}: error: the weights do not fit this network: "
            f"the file has '{'x' * 37}...', which the network lacks (1 extra tensors)\n{FIT_HINT}", tmp_path)


def test_a_training_checkpoint_points_at_the_run_folder(tmp_path: Path, capsys):
    from archlang.runs import Progress, Totals
    from archlang.runs import rng as run_rng
    from archlang.runs.checkpoint import snapshot, write_snapshot

    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    progress = Progress(epoch=1, step=2, totals=Totals(), history=[], run_hash="0" * 64, rng=[run_rng.capture()])
    path = write_snapshot(tmp_path / "checkpoints", snapshot(model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1),
                                                             progress, copy=False))
    refused(_export(path, tmp_path / "m.ts"), capsys, f"{path}: error: this is a training checkpoint, not a "
            "weights file\nhint: give the run folder (its newest good checkpoint is used), or its model.safetensors",
            tmp_path)


def test_folders_fifos_devices_and_absent_files_are_not_read(tmp_path: Path, capsys):
    os.mkfifo(tmp_path / "fifo.pt")
    (tmp_path / "folder.pt").mkdir()
    cases = {tmp_path / "fifo.pt": "the weights path is not a regular file\n" + READ_HINT,
             Path("/dev/zero"): "the weights path is not a regular file\n" + READ_HINT,
             tmp_path / "folder.pt": "the weights path is a folder, not a file\nhint: give the weights file, or the "
                                     "run folder itself as the target",
             tmp_path / "absent.pt": "no such weights file"}
    for path, message in cases.items():
        refused(_export(path, tmp_path / "m.ts"), capsys, f"{path}: error: {message}", tmp_path)


@pytest.mark.parametrize("arg, message", [
    ("torchvision:resnet18", ("error: --weights torchvision:resnet18: give the torchvision model and its state-dict "
     "file\nhint: --weights torchvision:NAME=FILE, e.g. --weights torchvision:resnet50=resnet50.pth (nothing is "
     "downloaded)")),
    ("torchvision:=w.pth", ("error: --weights torchvision:=w.pth: give the torchvision model and its state-dict "
     "file\nhint: --weights torchvision:NAME=FILE, e.g. --weights torchvision:resnet50=resnet50.pth (nothing is "
     "downloaded)")),
])
def test_torchvision_weights_arguments(arg: str, message: str, tmp_path: Path, capsys):
    refused(["export", SPEC, "--weights", arg, "--torchscript", str(tmp_path / "m.ts")], capsys, message, tmp_path)


def test_torchvision_weights_of_a_network_that_is_not_that_model(tmp_path: Path, capsys):
    (tmp_path / "w.pth").write_bytes(_state_bytes(_model().state_dict()))
    refused(["export", SPEC, "--weights", f"torchvision:resnet18={tmp_path / 'w.pth'}", "--torchscript",
             str(tmp_path / "m.ts")], capsys, f"{tmp_path / 'w.pth'}: error: the weights do not fit torchvision's "
            "resnet18: 'conv1.weight' is missing from the file (102 of 122 tensors missing)\n" + FIT_HINT, tmp_path)


def test_mutated_weights_files_never_escape_as_anything_but_one_message(tmp_path: Path):
    """Random byte edits and truncations of both formats: load_weights returns a state dict or raises
    ArchlangError, nothing else (torch.load alone raised ten exception types on such files)."""
    import random

    from archlang.errors import ArchlangError
    from archlang.weights import load_weights

    rng = random.Random(0)
    sources = [_state_bytes(_model().state_dict()), _safetensors(), pickle.dumps({"a": 1}, protocol=2)]
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(300):
        data = bytearray(sources[i % len(sources)])
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"m{i}.pt"
        path.write_bytes(bytes(data))
        try:
            load_weights(path)
            outcomes["loaded"] += 1
        except ArchlangError as err:
            assert "\n" not in err.message and len(err.render()) < 400
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100
