"""What compile prints where it is read (80 columns, wide terminals, JSON), IR JSON read back,
the JSON Schemas, --version and shell completion."""

from __future__ import annotations

import json

import pytest

import archlang
from archlang.cli import main
from archlang.report import compact


def _compile_out(capsys, monkeypatch, columns: int, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["compile", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("spec", ["wrn-28-10", "wide-gated-resnet-28-10-dropout", "resnet-34", "diracnet-34-8"])
def test_compile_fits_80_columns_without_cutting(capsys, monkeypatch, spec):
    out = _compile_out(capsys, monkeypatch, 80, spec)
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80


def test_compile_abbreviates_macs_at_80_columns_and_not_when_wide(capsys, monkeypatch):
    narrow = _compile_out(capsys, monkeypatch, 80, "wrn-28-10", "--depth", "2")
    assert "│   230,400 │ 235.9M │" in narrow  # params in full, MACs to four digits
    wide = _compile_out(capsys, monkeypatch, 160, "wrn-28-10", "--depth", "2")
    assert "│   230,400 │ 235,929,600 │" in wide and "235.9M" not in wide


def test_compact_numbers():
    assert [compact(n) for n in (432, 442_368, 2_621_440, 235_929_600, 5_243_328_768)] == \
        ["432", "442.4K", "2.621M", "235.9M", "5.243G"]


def test_compile_json_lists_every_layer(capsys):
    assert main(["compile", "wrn-28-10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    compiled = archlang.compile_spec("wrn-28-10")
    assert len(data["layers"]) == len(compiled.summary.layers)
    conv = next(row for row in data["layers"] if row["path"] == "1.body.3")
    assert conv == {"path": "1.body.3", "depth": 2, "kind": "conv", "label": "conv 3x3, 160->160",
                    "output_shape": [160, 32, 32], "params": 230_400, "weights": 230_400, "macs": 235_929_600,
                    "leaf": True}
    assert sum(row["params"] for row in data["layers"] if row["leaf"]) == data["params"] == 36_479_194


def test_compile_reads_its_own_json_back(tmp_path, capsys):
    assert main(["compile", "wide-gated-resnet-28-10-dropout", "--json"]) == 0
    first = capsys.readouterr().out
    path = tmp_path / "net.json"
    path.write_text(first)
    assert main(["compile", str(path), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == json.loads(first)
    assert archlang.compile_spec(path).total_params == 36_479_206  # the Python API reads it too


@pytest.mark.parametrize(("text", "message"), [
    ('{"kind": "wrn", "depth": 28, "k": 1.5}', "invalid IR at wrn.k: Input should be a valid integer"),
    ('{"ir": {"kind": "wrn", "depth": 28, "colour": 1}}',
     "invalid IR at wrn.colour: Extra inputs are not permitted"),
    ('{"kind": "wrn", "depth": 27}', "invalid IR: depth 27 is not 6N + 4 for a whole number N >= 1"),
    ('{"layers": []}', ('this JSON is not archlang IR: expected the output of `archlang compile --json` '
                       '(an object with "ir") or an IR node (an object with "kind")')),
    ('{"kind": "linear", "out": 10}', "a network is a family call or a seq(input(...), ...); got linear(...)"),
])
def test_bad_ir_json_is_one_message(tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert main(["compile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{path}: error: {message}" and "Traceback" not in err


def test_schemas_are_the_models_json_schemas(capsys):
    from archlang.train.recipes import Recipe

    assert main(["schema", "recipe"]) == 0
    recipe = json.loads(capsys.readouterr().out)
    assert recipe["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(recipe["properties"]) == set(Recipe.model_fields) and recipe["additionalProperties"] is False
    assert main(["schema"]) == 0
    ir = json.loads(capsys.readouterr().out)
    kinds = set(ir["discriminator"]["mapping"])
    assert {"wrn", "diracnet", "conv", "residual", "gated", "highway", "seq"} <= kinds


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"archlang {archlang.__version__}\n"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_the_commands(capsys, shell):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for command in ("compile", "params", "list", "draw", "schema", "train", "prune"):
        assert command in script
    assert "--convention" in script
