"""`archlang draw`: the graph (repeats collapsed, shapes on edges), rendering, and no `dot`."""

from __future__ import annotations

import re
import shutil
import sys

import pytest

import archlang
from archlang.cli import main
from archlang.draw import graph

pytest.importorskip("graphviz")


def _source(spec: str) -> str:
    return graph(archlang.compile_spec(spec)).source


def test_wrn_draws_each_group_once_with_its_count():
    dot = _source("wrn-28-10")
    # per group: the widening block, then its 3 identical blocks drawn once in a "× 3" frame
    assert dot.count("× 3") == 3 and dot.count("× 4") == 0
    assert dot.count("conv 3x3, 160->160") == 3  # one in the widening block, two in the collapsed one
    assert "projection 1x1/2, 160->320\n51,200 params" in dot
    assert 'label=" 640x8x8"' in dot and "36,479,194 params in all" in dot


def test_highway_and_dirac_runs_collapse():
    assert "× 49   249,900 params" in _source("highway-fc-50")
    dirac = _source("diracnet-34-2")
    assert re.findall(r"× (\d+)", dirac) == ["10", "9", "9"]
    assert "dirac conv 3x3, 64->32\n18,434 params" in dirac


def test_shortcuts_start_where_they_read():
    # an identity carries the raw input; a node shortcut reads pre(x), drawn from the pre-activation's relu
    dot = _source("seq(input(16, 8, 8), residual(seq(conv(16), bn)), "
                  "residual(seq(conv(32), bn), shortcut=seq(conv(32, kernel=1), bn), pre=seq(bn, relu)), "
                  "flatten, linear(10))")
    assert 'label=" x"' in dot and "conv 1x1, 16->32" in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_draw_renders_svg(tmp_path, capsys):
    out = tmp_path / "net.svg"
    assert main(["draw", "highway-mnist-16", "-o", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml") and "highway conv (relu), H and T" in out.read_text()
    assert capsys.readouterr().err == f"wrote {out}\n"


def test_without_dot_the_dot_file_is_written_with_how_to_render_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "net.svg"
    assert main(["draw", "mlp(depth=2, width=8)", "-o", str(out)]) == 0
    dot_file = tmp_path / "net.dot"
    assert not out.exists() and dot_file.read_text().startswith("digraph network {")
    assert capsys.readouterr().err == (
        f"wrote {dot_file}; graphviz's dot is not installed, so this is the graph itself; render it with "
        f"`dot -Tsvg {dot_file} -o {out}` (dot comes with graphviz: apt-get install graphviz, brew install graphviz)\n")


def test_draw_errors(tmp_path, capsys, monkeypatch):
    assert main(["draw", "mlp(depth=2, width=8)", "-o", str(tmp_path / "net.jpg")]) == 2
    assert capsys.readouterr().err == (f"{tmp_path / 'net.jpg'}: error: cannot draw to a .jpg file\n"
                                       "hint: name the output net.svg, net.png, net.pdf or net.dot\n")
    monkeypatch.setitem(sys.modules, "graphviz", None)
    assert main(["draw", "mlp(depth=2, width=8)", "-o", str(tmp_path / "net.dot")]) == 2
    assert capsys.readouterr().err == ("error: archlang draw needs the 'graphviz' package, which is not installed\n"
                                       "hint: pip install 'archlang[draw]'\n")


def test_depth_folds_blocks_into_boxes():
    dot = graph(archlang.compile_spec("wrn-28-10"), max_depth=0).source
    assert "residual (inside not drawn)\n461,440 params" in dot and "batchnorm(160)" not in dot


def test_a_drawing_too_large_to_read_is_refused(capsys, tmp_path):
    layers = ", ".join(f"linear({n}), relu" for n in range(1, 1100))  # all different: nothing collapses
    assert main(["draw", f"seq(input(8), {layers})", "-o", str(tmp_path / "net.dot")]) == 2
    assert capsys.readouterr().err == ("error: the drawing would have more than 2,000 boxes\n"
                                       "hint: --depth 0 draws each top-level block as one box\n")
    assert not (tmp_path / "net.dot").exists()
