"""Hostile outputs and analysis flags (issue 10): each ends in exit 2 with one exact message and no
traceback, and leaves every input file (and any previous output) unchanged."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hostile_cli import FULL_HINT, SPEC, refused
from hostile_cli import model as _model

from archlang.weights import save_weights

ROOT = Path(__file__).resolve().parents[2]


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
