"""reproduce/highway_fig1.py: the committed random-search specs are what its fixed seed gives, and they
group by activation when trained with --grouped."""

from __future__ import annotations

import sys
from pathlib import Path

from archlang.errors import Source
from archlang.launch.groups import group_points
from archlang.launch.points import sweep_points

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "reproduce"))  # the scripts import their neighbour `jobs` so

import highway_fig1


def test_committed_specs_are_the_seeded_sample_and_its_prefixes_stay() -> None:
    for kind in highway_fig1.KINDS:
        for layers in highway_fig1.LAYERS:
            text = (highway_fig1.SPECS / f"{kind}-{layers}-part1.arch").read_text()
            assert text == highway_fig1.spec_text(kind, layers, highway_fig1.sample(kind, layers, 20))
    # --settings 40 adds settings after the first 20, it does not redraw them.
    assert highway_fig1.sample("highway", 50, 40)[:20] == highway_fig1.sample("highway", 50, 20)


def test_a_search_file_trains_as_two_groups_split_by_activation() -> None:
    path = highway_fig1.SPECS / "highway-10-part1.arch"
    source = Source(path.read_text(), str(path))
    points = sweep_points(source)
    assert len(points) == 20
    groups = group_points(source, points, "highway-mnist", {"epochs": 10})
    acts = [{dict(p.values)["a"] for p in g} for g in groups]
    assert sorted(map(sorted, acts)) == [['"relu"'], ['"tanh"']] and sum(map(len, groups)) == 20
    settings = highway_fig1.sample("highway", 10, 20)
    assert all(-10 <= s["b"] <= -1 and s["a"] in ("relu", "tanh") for s in settings)  # the paper's stated ranges
