"""The shipped specs by name: `archlang list`, names wherever a spec file goes, did-you-mean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import archlang
from archlang.catalog import SPEC_DIR, list_specs
from archlang.cli import main
from archlang.parser import read_source

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted(ROOT.glob("archlang/specs/*/*.arch"))


def test_every_spec_file_is_in_the_catalogue_and_every_entry_has_a_file():
    listed = yaml.safe_load((SPEC_DIR / "catalog.yaml").read_text(encoding="utf-8"))
    assert sorted(listed["specs"]) == sorted(p.stem for p in SPEC_FILES)
    assert {paper for paper, _table in listed["specs"].values()} <= set(listed["papers"])


def test_list_json_gives_name_paper_table_and_compiled_parameters(capsys):
    assert main(["list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert len(rows) == len(SPEC_FILES)
    wrn = rows["wrn-28-10"]
    assert (wrn["paper"], wrn["table"], wrn["params"]) == ("WRN", "Tables 4-6", 36_479_194)
    assert wrn["file"] == "archlang/specs/wrn/wrn-28-10.arch"
    assert rows["diracnet-34-2"]["params"] == 3_693_158
    assert list_specs()[0] == next(iter(rows.values()))  # the Python API is the same catalogue


def test_list_fits_80_columns_without_cutting(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in "".join(lines)
    assert any(line.split()[:2] == ["wide-gated-resnet-28-10-dropout-cifar100", "Gated"] for line in lines)


def test_a_shipped_name_compiles_as_its_file(capsys):
    assert main(["compile", "wrn-28-10", "--json"]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert main(["compile", "archlang/specs/wrn/wrn-28-10.arch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_name
    assert read_source("wrn/wrn-28-10").filename == "archlang/specs/wrn/wrn-28-10.arch"
    assert read_source("wrn-28-10.arch").text == (ROOT / "archlang/specs/wrn/wrn-28-10.arch").read_text()


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrn-28-10").write_text("mlp(depth=2, width=8)\n")
    assert main(["params", "wrn-28-10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["params"] == 6_562


def test_an_unknown_name_gets_did_you_mean(capsys):
    assert main(["compile", "wrn-28-11"]) == 2
    assert capsys.readouterr().err == (
        "wrn-28-11: error: no such spec file or shipped spec\n"
        "hint: did you mean 'wrn-28-12'? `archlang list` shows the shipped specs; or give a path to a .arch "
        "file, or the spec text itself, e.g. 'wrn(depth=28, k=10)'\n")
    assert main(["params", "diracnet-43-2.arch"]) == 2
    assert "did you mean 'diracnet-34-2'?" in capsys.readouterr().err


def test_bare_words_are_still_spec_text(capsys):
    assert main(["compile", "wrn"]) == 2  # a family name: the parser says what it lacks
    assert capsys.readouterr().err.startswith("<inline>:1:1: error: wrn needs depth=")


def test_params_labels_rows_by_name_and_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["params", "wrn-28-10"]) == 0
    out = capsys.readouterr().out
    assert "│ wrn-28-10 " in out and "wrn(depth=28" not in out
    sweep = tmp_path / "sweep.arch"
    sweep.write_text("let d = {16, 22}\nwrn(depth=d, k={1, 2})\n")
    assert main(["params", str(sweep)]) == 0
    assert f"│ {sweep} [d=22,k=2] " in capsys.readouterr().out
    assert main(["params", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[3] == {
        "spec": "wrn(depth=22, k=2)", "params": archlang.count_params("wrn(depth=22, k=2)"), "point": {"d": "22", "k": "2"}}


def test_python_api_takes_text_paths_and_names():
    assert archlang.count_params("wrn-28-10") == 36_479_194
    assert archlang.count_params(ROOT / "archlang/specs/wrn/wrn-40-4.arch") == 8_949_210
    assert archlang.count_params("archlang/specs/wrn/wrn-40-4.arch") == 8_949_210
    assert archlang.count_params("wrn(depth=40, k=4)") == 8_949_210
    assert [c.point_text for c in archlang.compile_all("wrn(depth={16, 22}, k=1)")] == ["depth=16", "depth=22"]
    paired = archlang.compile_all("let (d, k) = {(16, 8), (28, 10)}\nwrn(depth=d, k=k)")
    assert [c.point_text for c in paired] == ["d=16,k=8", "d=28,k=10"]  # a paired set names each value


def test_list_filters_by_wildcard(capsys):
    assert main(["list", "wrn-28-*", "--json"]) == 0
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == [
        "wrn-28-2-b33", "wrn-28-10", "wrn-28-10-cifar100", "wrn-28-12", "wrn-28-10-dropout"]
    assert main(["list", "vgg19*"]) == 2
    assert capsys.readouterr().err == ("error: no shipped spec matches 'vgg19*'\n"
                                       "hint: patterns are shell wildcards over the names: 'wrn-28-*', '*gated*'\n")


def test_load_run_at_top_level_reads_a_run_folder(tmp_path):
    from archlang.errors import ArchlangError
    from archlang.runs import RunFolder
    from archlang.weights import save_weights

    with pytest.raises(ArchlangError, match=r"not a run folder \(no spec.arch\)"):
        archlang.load_run(tmp_path)
    spec = "seq(input(4), linear(3))"
    (tmp_path / RunFolder.SPEC).write_text(spec + "\n", encoding="utf-8")
    with pytest.raises(ArchlangError, match="the run has no weights yet"):
        archlang.load_run(tmp_path)
    model = archlang.compile(spec)
    save_weights(model, tmp_path / RunFolder.MODEL)
    loaded = archlang.load_run(tmp_path)  # a spec and final weights are enough
    assert all((a == b).all() for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))
    assert loaded.folder == tmp_path
