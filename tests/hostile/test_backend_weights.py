"""Hostile weights, outputs and analysis flags (issue 10): each ends in exit 2 with one exact message and
no traceback, and leaves every input file (and any previous output) unchanged, or is a documented success."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import archlang
from archlang.cli import main
from archlang.weights import save_weights

SPEC = "seq(input(3, 8, 8), conv(4), bn, relu, global_avgpool, linear(2))"
WIDER = "seq(input(3, 8, 8), conv(6), bn, relu, global_avgpool, linear(2))"
READ_HINT = "hint: archlang reads .safetensors files and state dicts saved with torch.save(model.state_dict(), path)"
FIT_HINT = "hint: use the spec the weights were trained with"
FULL_HINT = "hint: the disk is full: free some space and run the command again (nothing was overwritten)"
ROOT = Path(__file__).resolve().parents[2]


def _model(spec: str = SPEC) -> torch.nn.Module:
    torch.manual_seed(0)
    return archlang.compile(spec).eval()


def _state_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys, message: str, folder: Path) -> None:
    """`archlang ARGV` exits 2 with exactly `message`, and nothing under `folder` changed."""
    before = _digests(folder)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert (code, err) == (2, message)
    assert "Traceback" not in err
    assert _digests(folder) == before


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


# ---- outputs ------------------------------------------------------------------------------------------


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """What fold needs of a run: its spec and final weights."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.arch").write_text(SPEC + "\n")
    save_weights(_model(), run / "model.safetensors")
    return run


def test_fold_refuses_an_output_that_is_not_a_weights_file(run_folder: Path, capsys):
    # was: success, after writing the weights to model.arch and then the spec over them
    out = run_folder.parent / "model.arch"
    refused(["fold", str(run_folder), "--out", str(out)], capsys, f"{out}: error: --out names the folded weights: "
            "it must end in .safetensors, .pt, .pth\nhint: e.g. --out folded.safetensors (the spec goes beside it "
            "as folded.arch)", run_folder.parent)
    assert not out.exists()


def test_fold_refuses_outputs_that_overwrite_its_inputs(run_folder: Path, capsys):
    weights = run_folder / "model.safetensors"
    refused(["fold", str(run_folder), "--out", str(weights)], capsys, f"{weights}: error: the folded weights would "
            f"overwrite the input {weights}\nhint: choose another output path", run_folder)
    spec = run_folder.parent / "net.arch"
    spec.write_text(SPEC)
    out = run_folder.parent / "net.safetensors"  # its spec would be written over net.arch
    refused(["fold", str(spec), "--weights", str(weights), "--out", str(out)], capsys, f"{spec}: error: the folded "
            f"spec would overwrite the input {spec}\nhint: choose another output path", run_folder.parent)


def test_export_refuses_one_path_for_two_outputs(run_folder: Path, capsys):
    out = run_folder.parent / "m.bin"
    refused(["export", str(run_folder), "--onnx", str(out), "--torchscript", str(out)], capsys,
            f"{out}: error: the ONNX model and the TorchScript model would be the same file\nhint: give them "
            "different paths", run_folder.parent)


def test_outputs_on_a_folder_or_in_a_missing_folder(run_folder: Path, capsys):
    folder = run_folder.parent / "out.ts"
    folder.mkdir()
    refused(["export", str(run_folder), "--torchscript", str(folder)], capsys, f"{folder}: error: cannot write the "
            "TorchScript model: the output path is a folder\nhint: the output path is a folder: give a file name",
            run_folder.parent)
    missing = run_folder.parent / "absent" / "m.onnx"
    refused(["export", str(run_folder), "--onnx", str(missing)], capsys, f"{missing}: error: cannot write the ONNX "
            "model: No such file or directory\nhint: the output folder does not exist: create it first, or choose "
            "another path", run_folder.parent)
    missing = run_folder.parent / "absent" / "f.safetensors"
    refused(["fold", str(run_folder), "--out", str(missing)], capsys, f"{missing}: error: cannot write the folded "
            "weights: No such file or directory\nhint: the output folder does not exist: create it first, or choose "
            "another path", run_folder.parent)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("flag, what", [("--torchscript", "TorchScript model"), ("--onnx", "ONNX model")])
def test_a_full_disk_while_exporting_keeps_the_previous_file(flag: str, what: str, run_folder: Path, capsys,
                                                            monkeypatch):
    out = run_folder.parent / "m.out"
    out.write_bytes(b"the previous export")
    monkeypatch.setattr(os, "fsync", _no_space)
    refused(["export", str(run_folder), flag, str(out)], capsys, f"{out}: error: cannot write the {what}: "
            f"No space left on device\n{FULL_HINT}", run_folder.parent)
    assert sorted(p.name for p in run_folder.parent.iterdir()) == ["m.out", "run"]  # no temporary left


def test_a_full_disk_while_folding_writes_neither_file(run_folder: Path, capsys, monkeypatch):
    out = run_folder.parent / "f.safetensors"
    monkeypatch.setattr(os, "fsync", _no_space)
    # the spec, written last, is synced first: it is the file that fails; its weights are not renamed in either
    refused(["fold", str(run_folder), "--out", str(out)], capsys, f"{out.with_suffix('.arch')}: error: cannot write "
            f"the folded spec: No space left on device\n{FULL_HINT}", run_folder.parent)
    assert sorted(p.name for p in run_folder.parent.iterdir()) == ["run"]  # no 0-byte .arch, no temporaries


def test_onnx_export_without_onnx_names_the_extra(run_folder: Path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails as if it were not installed
    refused(["export", str(run_folder), "--onnx", str(run_folder.parent / "m.onnx")], capsys,
            "error: ONNX export needs the onnx package, which is not installed\nhint: pip install 'archlang[export]'",
            run_folder.parent)


@pytest.fixture
def tiny_mount(tmp_path: Path):
    """A 64 KiB tmpfs (mounting needs root; skipped elsewhere): a real full disk, or read-only."""
    def mount(options: str) -> Path:
        where = tmp_path / f"mnt-{options.replace(',', '-')}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64k,{options}", "tmpfs", str(where)],
                              capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (not root)")
        mounted.append(where)
        return where

    mounted: list[Path] = []
    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_torchscript_export_to_a_really_full_disk_is_one_message(run_folder: Path, tiny_mount):
    # was: SIGABRT (exit 134) from TorchScript's own writer, and part of a file left behind
    disk = tiny_mount("rw")
    (disk / "previous.ts").write_bytes(b"x" * 1000)
    big = "seq(input(3, 8, 8), conv(64), conv(64), global_avgpool, linear(2))"  # ~150 KB of weights
    done = subprocess.run([sys.executable, "-m", "archlang", "export", big, "--torchscript", str(disk / "previous.ts")],
                          capture_output=True, text=True, check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr.strip()) == (2, (f"{disk / 'previous.ts'}: error: cannot write the "
                                                         f"TorchScript model: No space left on device\n{FULL_HINT}"))
    assert [p.name for p in disk.iterdir()] == ["previous.ts"] and (disk / "previous.ts").read_bytes() == b"x" * 1000


def test_outputs_on_a_read_only_file_system(run_folder: Path, capsys, tiny_mount):
    disk = tiny_mount("ro")
    refused(["fold", str(run_folder), "--out", str(disk / "f.pt")], capsys, f"{disk / 'f.pt'}: error: cannot write "
            "the folded weights: Read-only file system\nhint: the file system is read-only: choose another output "
            "path", run_folder.parent)


# ---- analysis flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["prune", "RUN", "--strategy", "random", "--seeds", "0"],
     ("error: --seeds must be from 1 to 1000, got 0\nhint: the number of random removal orders to average, e.g. "
     "--seeds 5")),
    (["prune", "RUN", "--seeds", "-3"], ("error: --seeds must be from 1 to 1000, got -3\nhint: the number of random "
     "removal orders to average, e.g. --seeds 5")),
    (["prune", "RUN", "--strategy", "random", "--seeds", "1000000"],
     ("error: --seeds must be from 1 to 1000, got 1000000\nhint: the number of random removal orders to average, "
     "e.g. --seeds 5")),
    (["prune", "RUN", "--subset", "-5"], ("error: --subset must be a positive number of images, got -5\nhint: e.g. "
     "--subset 1000 for the first 1000 images; leave it out for all")),
    (["lesion", "RUN", "--subset", "0"], ("error: --subset must be a positive number of images, got 0\nhint: e.g. "
     "--subset 1000 for the first 1000 images; leave it out for all")),
    (["sdi", SPEC, "--samples", "0"], ("error: --samples must be from 1 to 1000, got 0\nhint: the number of "
     "initialisations to average, e.g. --samples 10")),
    (["gates", "RUN", "--subset", "-1"], ("error: --subset must be a positive number of images, got -1\nhint: e.g. "
     "--subset 1000 for the first 1000 images; leave it out for all")),
])
def test_analysis_flags_out_of_range(argv: list[str], message: str, run_folder: Path, capsys):
    # was: StatisticsError for --seeds 0; --subset -5 silently dropped the last 5 images
    refused([str(run_folder) if a == "RUN" else a for a in argv], capsys, message, run_folder.parent)


def test_no_removable_block_and_no_highway_layer(run_folder: Path, capsys):
    shutil.rmtree(run_folder / "analysis", ignore_errors=True)
    from archlang.analysis.prune import lesion, prune
    from archlang.analysis.run import load_run
    from archlang.errors import ArchlangError

    run = load_run(str(run_folder))
    with pytest.raises(ArchlangError, match="^error: the network has no residual block that can be removed"):
        prune(run, None, "greedy")
    with pytest.raises(ArchlangError, match="^error: the network has no highway layers to lesion$"):
        lesion(run, None)


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


def test_export_over_its_own_spec_or_weights_is_refused(run_folder: Path, capsys):
    spec = run_folder.parent / "net.arch"
    spec.write_text(SPEC)
    weights = run_folder / "model.safetensors"
    refused(["export", str(spec), "--weights", str(weights), "--onnx", str(spec)], capsys, f"{spec}: error: the ONNX "
            f"model would overwrite the input {spec}\nhint: choose another output path", run_folder.parent)
    refused(["export", str(spec), "--weights", str(weights), "--torchscript", str(weights)], capsys,
            f"{weights}: error: the TorchScript model would overwrite the input {weights}\nhint: choose another "
            "output path", run_folder.parent)


def test_a_plot_on_a_full_disk_keeps_the_previous_figure(tmp_path: Path, capsys, monkeypatch):
    spec = "let g = gated(residual(seq(conv(4), bn)))\nseq(input(3, 8, 8), conv(4), repeat(2, g), global_avgpool, linear(2))"
    (tmp_path / "gates.png").write_bytes(b"the previous figure")
    monkeypatch.setattr(os, "fsync", _no_space)
    refused(["gates", spec, "--no-data", "--out", str(tmp_path)], capsys, f"{tmp_path / 'gates.png'}: error: "
            f"cannot write the plot: No space left on device\n{FULL_HINT}", tmp_path)
