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


def test_collecting_with_other_epochs_keeps_the_rows_and_records_the_trained_command(tmp_path, monkeypatch) -> None:
    # Review s6 finding 4: `--collect-only --epochs 5` over runs trained 3 epochs found no run and erased the rows.
    import jobs

    from archlang.runs import MetricsRow, RunFolder, RunIdentity, Summary
    from archlang.runs.sweep import manifest_of, write_manifest

    monkeypatch.setattr(jobs, "RUNS", tmp_path)
    group = highway_fig1.jobs(highway_fig1.BLOCK, 5)[("highway", 10)]
    sweep = tmp_path / group[0].name
    sweep.mkdir(parents=True)
    points = {"p0": [1.0, 0.5, 0.2], "p1": [1.0, 0.4, 0.1]}
    write_manifest(sweep, manifest_of("x", [{"index": i, "name": n, "values": {}, "spec": "x", "params": 0}
                                            for i, n in enumerate(points)]))
    for name, losses in points.items():
        run = RunFolder.create(sweep / name)
        run.write_identity(RunIdentity("x", "x", "", {"epochs": 3}, "0" * 64), {})
        for epoch, loss in enumerate(losses, 1):
            run.append_metrics(MetricsRow(epoch=epoch, train_loss=loss, train_error=1.0, lr=0.1, seconds=1.0))
        run.write_summary(Summary(status="finished", epochs_done=3, epochs=3))
        run.unlock()
    rows = highway_fig1.results({("highway", 10): group}, tmp_path / "fig1.png")
    assert [r["ours"] for r in rows] == [0.1, 0.15] and rows[0]["best_setting"] == "p1"
    assert all(r["epochs"] == 3 and "--epochs 3" in r["command"] and "--epochs 5" not in r["command"] for r in rows)


def test_only_training_writes_the_sweep_files(tmp_path, monkeypatch) -> None:
    # Review s6 findings 3 and 17: collecting (and highway_figs, which names the search's runs) wrote them.
    import highway_figs
    import jobs

    monkeypatch.setattr(highway_fig1, "ROOT", tmp_path)
    monkeypatch.setattr(highway_fig1, "SPECS", tmp_path / "reproduce" / "highway_fig1")
    monkeypatch.setattr(highway_fig1, "FIGURE", tmp_path / "reproduce" / "highway_fig1.png")
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(jobs, "RESULTS", tmp_path / "results.json")
    assert highway_fig1.jobs(highway_fig1.BLOCK, 10) and highway_figs.search_runs() == []
    highway_fig1.main(["--collect-only"])
    assert not highway_fig1.SPECS.exists()
    started = []
    monkeypatch.setattr(jobs, "run_all", lambda found, *_: started.append(found) or 0.0)
    highway_fig1.main(["--time-limit", "1"])
    written = sorted(p.name for p in highway_fig1.SPECS.iterdir())
    assert len(written) == 8 and len(started[0]) == 8 and "highway-50-part1.arch" in written
    assert (highway_fig1.SPECS / "plain-20-part1.arch").read_text() == (ROOT / "reproduce" / "highway_fig1" /
                                                                        "plain-20-part1.arch").read_text()
