"""Memory from the IR (issue 10, sizes): the estimate's formula, the refusal before anything is
allocated (API, train, export, fold), `compile --batch`, and the estimate against a measured step."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import archlang
from archlang import infer
from archlang.errors import ArchlangError

ROOT = Path(__file__).resolve().parent.parent
HUGE_INPUT = "seq(input(3, 100000, 100000), conv(4), global_avgpool, linear(10))"
WIDE_CONV = "seq(input(1,28,28), conv(1000000, kernel=1), global_avgpool, linear(10))"
# A refused command imports torch and nothing more: far below what the refused network would take.
MAX_RSS_BYTES = 1 << 30


def test_estimate_by_hand():
    summary = archlang.compile_spec("seq(input(1, 4, 4), conv(2, kernel=1), relu, flatten, linear(3))").summary
    m = infer.memory_estimate(summary, batch=5)
    # values per example: conv 32 + relu 32 + flatten 0 (a view) + linear 3 = 67 kept, the largest 32
    # twice more for backward's gradients; 4 bytes a value.
    assert m.forward_backward_bytes == 5 * 4 * (67 + 2 * 32)
    assert m.input_bytes == 5 * 4 * 16
    assert m.params_bytes == m.gradient_bytes == m.optimizer_bytes == 4 * (2 + 32 * 3 + 3)
    assert m.inference_peak_bytes == 5 * 4 * 64  # relu (or flatten): 32 in + 32 out
    assert m.estimated_total == m.input_bytes + m.forward_backward_bytes + m.params_bytes
    assert m.training_bytes == m.estimated_total + 2 * m.params_bytes
    assert infer.memory_estimate(archlang.compile_spec("seq(input(1, 4, 4), conv(2, kernel=1), relu, flatten, "
                                                       "linear(3))").network, 5) == m


def test_branches_count_their_join():
    one = infer.memory_estimate(archlang.compile_spec("seq(input(2, 4, 4), conv(2))").summary)
    cat = infer.memory_estimate(archlang.compile_spec("seq(input(2, 4, 4), concat(conv(2), identity))").summary)
    # concat: the conv's 32 values and the joined 64 (identity adds nothing); the largest is the join.
    assert one.forward_backward_bytes == 4 * (32 + 2 * 32)
    assert cat.forward_backward_bytes == 4 * (32 + 64 + 2 * 64)


def test_check_memory_refuses_with_the_figures():
    m = infer.memory_estimate(archlang.compile_spec("seq(input(1, 4, 4), conv(2, kernel=1), relu, flatten, "
                                                    "linear(3))").summary, batch=5)
    infer.check_memory(m, training=True, available=m.training_bytes)
    with pytest.raises(ArchlangError) as info:
        infer.check_memory(m, training=True, available=m.training_bytes - 1)
    assert info.value.message == (
        "the network needs about 4.15 KB to train at batch 5 (forward/backward pass 2.62 KB, input 320 B, "
        "parameters, gradients and optimizer state 1.21 KB), more than the 4.15 KB of this machine's available "
        "memory")
    with pytest.raises(ArchlangError) as info:
        infer.check_memory(m, available=100)
    assert info.value.message == (
        "the network needs at least 1.68 KB to run at batch 5 (its largest layer's input and output 1.28 KB, "
        "parameters 404 B), more than the 100 B of this machine's available memory")
    assert info.value.hint == ("use a smaller batch size or input, or a smaller network; "
                               "`archlang compile --batch N` shows the estimate")


def test_build_refuses_before_allocating():
    pytest.importorskip("torch")
    from archlang.build import build

    compiled = archlang.compile_spec(HUGE_INPUT)
    with pytest.raises(ArchlangError) as info:
        build(compiled.network)
    assert info.value.message.startswith("the network needs at least 280.00 GB to run at batch 1 ")
    with pytest.raises(ArchlangError, match="to train at batch 8"):
        archlang.compile_spec(WIDE_CONV).build(batch=8, training=True)


# Runs `python -m archlang` and, at exit, writes the process's VmHWM: the peak RSS of its own address
# space. ru_maxrss (getrusage or wait4) would not do: it keeps the size of the forked pytest process
# from before exec, which in a full test run is already over a gigabyte.
_WITH_PEAK = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as f:
        peak = next(line.split()[1] for line in f if line.startswith("VmHWM"))
    with open(os.environ["PEAK_FILE"], "w") as f:
        f.write(peak)
atexit.register(_peak)
sys.argv[0] = "archlang"
runpy.run_module("archlang", run_name="__main__")
"""


def run_cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run `archlang ARGS`; also return that process's own peak RSS in bytes."""
    peak = cwd / ".peak"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "PEAK_FILE": str(peak)}
    done = subprocess.run([sys.executable, "-c", _WITH_PEAK, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300, check=False)
    rss = int(peak.read_text()) * 1024  # /proc reports kB
    peak.unlink()
    return done, rss


def test_train_refuses_a_network_that_cannot_fit(tmp_path):
    pytest.importorskip("torch")
    proc, rss = run_cli("train", WIDE_CONV, "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.splitlines()[0]
    # 1e6 channels x 784 pixels x 128 images x 4 bytes, kept for backward and twice again as gradients
    assert re.fullmatch(r"<inline>:1:1: error: the network needs about 1\.20 TB to train at batch 128 "
                        r"\(forward/backward pass 1\.20 TB, input 401\.41 KB, parameters, gradients and "
                        r"optimizer state 132\.00 MB\), more than the [\d.]+ [GMT]B of this machine's available "
                        r"memory", first), first
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
    assert rss < MAX_RSS_BYTES


@pytest.mark.parametrize("command", [["export", "--onnx", "net.onnx"], ["fold", "--out", "folded.safetensors"]])
def test_export_and_fold_refuse_a_huge_input(tmp_path, command):
    pytest.importorskip("torch")
    # The same parameters as the huge-input net: the weights are fine, only the activations cannot fit.
    from archlang.weights import save_weights

    save_weights(archlang.compile_spec(HUGE_INPUT.replace("100000, 100000", "32, 32")).build(),
                 tmp_path / "w.safetensors", {})
    proc, rss = run_cli(command[0], HUGE_INPUT, "--weights", "w.safetensors", *command[1:], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("<inline>:1:1: error: the network needs at least 280.00 GB to run at batch 1 "
                                  "(its largest layer's input and output 280.00 GB, parameters 632 B), more than the ")
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    assert rss < MAX_RSS_BYTES


def test_compile_batch_shows_the_estimate(tmp_path):
    proc, _ = run_cli("compile", "seq(input(1, 4, 4), conv(2, kernel=1), relu, flatten, linear(3))", "--batch", "5",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-5:] == [
        "memory at batch 5 (float32): input size 320 B",
        "forward/backward pass size: 2.62 KB",
        "params size: 404 B",
        "estimated total size: 3.34 KB",
        "training, with gradients and SGD momentum: 4.15 KB",
    ]


def test_compile_batch_is_bounded(capsys):
    from archlang.cli import main

    assert main(["compile", "seq(input(1, 4, 4), flatten)", "--batch", "0"]) == 2
    assert capsys.readouterr().err == "error: --batch must be between 1 and 1,000,000, got 0\n"


MEASURE = """
import sys, torch, archlang
torch.set_num_threads(1)
c = archlang.compile_spec(sys.argv[1]); batch = int(sys.argv[2])
m = c.build(batch=batch, training=True)
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
x = torch.randn(batch, *c.input_shape); y = torch.randint(0, 10, (batch,))
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) * 1024
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # restart the high-water mark here
torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
print(status("VmHWM") - base)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_estimate_is_close_to_a_measured_training_step():
    pytest.importorskip("torch")
    spec, batch = "wrn(depth=16, k=2)", 32
    proc = subprocess.run([sys.executable, "-c", MEASURE, spec, str(batch)], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    measured = int(proc.stdout)
    m = infer.memory_estimate(archlang.compile_spec(spec).summary, batch)
    # The parameters exist before the step; the step adds activations, gradients and momentum. Measured
    # ratios at batch 64: 0.81-0.86 for the paper's ResNets, 1.46 DiracNet, 1.31 highway (commit message).
    ratio = measured / (m.training_bytes - m.params_bytes)
    assert 0.6 <= ratio <= 1.6, ratio
