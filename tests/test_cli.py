"""The command line: exit codes, output, and `params` staying torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from archlang.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_compile_prints_table_and_paper_rounding(capsys):
    assert main(["compile", "wrn(depth=28, k=10)", "--depth", "0"]) == 0
    out = capsys.readouterr().out
    assert "36,479,194 (36.5M)" in out and "linear, 640->10" in out


def test_compile_json_is_the_validated_ir(capsys):
    assert main(["compile", "wrn(depth=10, k=1, dropout=0.3)", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ir"]["kind"] == "wrn" and data["ir"]["dropout"] == 0.3
    assert data["network"]["items"][0] == {"kind": "input", "shape": [3, 32, 32]}


def test_user_error_exits_2_with_message_and_no_traceback(capsys):
    assert main(["compile", "wrn(depth=27, k=1)"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("<inline>:1:5: error: depth 27") and "Traceback" not in err


def test_missing_spec_file_is_a_clear_error(capsys):
    assert main(["compile", "nowhere/x.arch"]) == 2
    assert "nowhere/x.arch: error: no such spec file" in capsys.readouterr().err


def test_non_utf8_spec_file(tmp_path, capsys):
    path = tmp_path / "bad.arch"
    path.write_bytes(b"wrn(depth=28,\n k=\xff10)")
    assert main(["compile", str(path)]) == 2
    assert f"{path}:2:4: error: spec is not valid UTF-8" in capsys.readouterr().err


def test_params_json_for_a_sweep(capsys):
    assert main(["params", "wrn(depth={16, 28}, k=10)", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["spec"] for d in data] == ["wrn(depth=16, k=10)", "wrn(depth=28, k=10)"]
    assert data[1]["params"] == 36_479_194


def test_params_weights_convention(capsys):
    assert main(["params", "highway_cnn(mnist, 32)", "--json", "--convention", "weights"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["params"] == 151_136


def test_params_does_not_import_torch():
    code = ("import sys; from archlang.cli import main; "
            "rc = main(['params', 'wrn(depth={16,22,28}, k={1,10})', '--json']); "
            "assert rc == 0 and main(['params', 'wrn-28-10']) == 0; "  # a shipped spec by name too
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr


def test_save_writes_loadable_weights(tmp_path):
    from archlang.weights import load_weights

    path = tmp_path / "m.safetensors"
    assert main(["compile", "mlp(depth=2, width=8)", "--save", str(path)]) == 0
    state = load_weights(path)
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 6_562
