"""reproduce/gated_hypotheses.py: its jobs change one thing each against Table 1, and its rows compare
each hypothesis with the baseline's runs of the same seeds (run folders written through archlang.runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

import archlang
from archlang.runs import MetricsRow, RunFolder, RunIdentity, Summary
from archlang.train.recipe_yaml import parse_flag_value
from archlang.train.recipes import build_recipe

REPRODUCE = Path(__file__).resolve().parents[1] / "reproduce"


@pytest.fixture
def repro(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The script as a module, with jobs.RUNS pointing at an empty temp folder."""
    monkeypatch.syspath_prepend(str(REPRODUCE))
    import gated_hypotheses
    import jobs

    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(gated_hypotheses, "RUNS", tmp_path / "runs", raising=False)
    return gated_hypotheses


def test_each_job_changes_only_its_hypothesis(repro) -> None:
    cells = repro.cells()
    assert len(cells) == 2 * (2 * 4 + 1)  # d = 100, 50; four hypotheses on both kinds, k-glorot on gated only
    assert {c.kind for c in cells if c.hypothesis.name == "k-glorot"} == {"gated"}
    plain = build_recipe("gated-mnist").resolved_dict()
    for c in cells:
        table1 = f"mlp(depth={c.d}, width=50, block={repro.BLOCKS[c.kind]})"
        assert c.hypothesis.spec(c.kind, c.d) == table1[:-1] + c.hypothesis.spec_args + ")"
        archlang.compile_spec(c.hypothesis.spec(c.kind, c.d), "t.arch")
        overrides = {f: parse_flag_value(v) for f, v in (s.split("=", 1) for s in c.hypothesis.sets)}
        changed = build_recipe("gated-mnist", overrides=overrides).resolved_dict()
        assert {k for k in changed if changed[k] != plain.get(k)} == set(overrides)
        if c.points:
            continue
        assert c.job.spec == c.hypothesis.spec(c.kind, c.d) and c.job.seeds == (0, 1, 2)
        # one folder level below the run root, like the runs the committed-hash tests walk
        assert c.job.folders[0].relative_to(repro.gated_mnist.jobs()[0].folder.parents[1]).parts == (
            "gated-hypotheses", f"{c.hypothesis.name}-{c.kind}-d{c.d}-seed0")
    assert all("--subset" in c.job.extra and c.job.name.startswith("smoke-") for c in repro.cells(smoke=True))


def test_per_copy_hypotheses_share_one_grouped_process_per_kind_and_depth(repro) -> None:
    from archlang.errors import Source
    from archlang.launch.groups import group_points
    from archlang.launch.points import sweep_points

    cells = repro.cells()
    jobs = repro.distinct_jobs(cells)
    assert len(jobs) == 16  # 18 cells: he-init and k-glorot of the gated nets share a job at each depth
    shared = [c for c in cells if c.points]
    assert sorted((c.hypothesis.name, c.kind, c.d) for c in shared) == [
        ("he-init", "gated", 50), ("he-init", "gated", 100), ("k-glorot", "gated", 50), ("k-glorot", "gated", 100)]
    assert {c.hypothesis.name for c in cells if not c.points} == {"first-linear", "bn-eps", "keras", "he-init"}
    for d in (50, 100):
        pair = [c for c in shared if c.d == d]
        job = pair[0].job
        assert job is pair[1].job and job.grouped_sweep and job.name == f"gated-hypotheses/he-init+k-glorot-gated-d{d}"
        source = Source((repro.ROOT / job.spec).read_text(), job.spec)
        points = sweep_points(source)
        # every cell's points are the sweep's, and all six train as ONE group (one process)
        assert sorted(p.name for p in points) == sorted(n for c in pair for n in c.points)
        assert [len(g) for g in group_points(source, points, "gated-mnist", {})] == [6]
        by_name = {p.name: p for p in points}
        for c in pair:
            sets = {f: parse_flag_value(v) for f, v in (s.split("=", 1) for s in c.hypothesis.sets)}
            for seed, name in enumerate(c.points):
                point = archlang.compile_spec(by_name[name].spec)
                mine = build_recipe("gated-mnist", train_args=point.train_args)
                # the point's recipe is exactly its hypothesis's --set job's: the same run identity
                assert mine.digest() == build_recipe("gated-mnist", overrides={**sets, "seed": seed}).digest()
        _manifest(repro, job, source.text, [p.as_dict() for p in points])  # the cells find their points by it
        for c in pair:
            assert [m.folders for m in c.trained()] == [[repro.jobs_module.RUNS / job.name / n for n in c.points]]


def _manifest(repro, job, text: str, points: list[dict]) -> None:
    """The sweep.json `archlang train SWEEP --grouped` writes in the sweep folder of `job`."""
    from archlang.runs.sweep import manifest_of, write_manifest

    folder = repro.jobs_module.RUNS / job.name
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, manifest_of(text, points))


def _shared(repro, d: int, seeds: tuple[int, ...]) -> dict[str, list[Path]]:
    """The sweep folder of he-init and k-glorot's shared process trained with `seeds` (its sweep.json, no runs
    yet): each hypothesis's point folders, by seed. Its spec file is not written (the repo holds the default's);
    the points' names and values are _shared_cells' (pinned equal to the sweep's above), not compiled here."""
    hypotheses = (repro.BY_NAME["he-init"], repro.BY_NAME["k-glorot"])
    stem = f"he-init+k-glorot-gated-d{d}" + ("" if seeds == repro.SEEDS else "-seeds" + "-".join(map(str, seeds)))
    job, fields = repro._shared_job(stem, d, smoke=False), repro._fields(hypotheses)
    values = {h.name: [(*zip(fields, repro._values(h, fields)), ("seed", str(s))) for s in seeds] for h in hypotheses}
    points = [{"index": i, "name": repro.folder_name(v), "values": dict(v), "spec": "", "params": 0}
              for i, v in enumerate(v for vs in values.values() for v in vs)]
    _manifest(repro, job, repro.shared_spec(hypotheses, "gated", d, seeds), points)
    return {name: [repro.jobs_module.RUNS / job.name / repro.folder_name(v) for v in vs] for name, vs in values.items()}


def _run(path: Path, seed: int, errors: list[float], mean_k: float | None, group: tuple[int, ...] = ()) -> None:
    """A finished run folder: test error per epoch `errors`, its summary; a member of `group` (seeds) if given."""
    run = RunFolder.create(path)
    extra: dict = {"dataset": "mnist"}
    if group:
        extra["group"] = {"seeds": list(group), "folders": [f"{path.name.rsplit('-seed', 1)[0]}-seed{s}" for s in group]}
    run.write_identity(RunIdentity("mlp()", "mlp()", "", {"seed": seed, "epochs": len(errors)}, "0" * 64, None),
                       extra)
    run.rewrite_metrics([MetricsRow(epoch=i + 1, train_loss=0.1, train_error=1.0, test_error=e, lr=0.002, seconds=1.0)
                         for i, e in enumerate(errors)])
    run.write_summary(Summary(status="finished", epochs_done=len(errors), epochs=len(errors),
                              final_test_error=errors[-1], mean_k=mean_k))
    run.unlock()


def _baseline(repro, kind: str, finals: dict[int, float]) -> None:
    name = f"gated-mnist/{kind}-d100"
    for seed, final in finals.items():
        _run(repro.RUNS / (name if seed == 0 else f"{name}-seed{seed}"), seed, [final],
             0.1 if kind == "gated" else None)


def test_rows_pair_each_seed_with_the_baselines_and_say_whether_the_gap_closes(repro) -> None:
    _baseline(repro, "gated", {0: 2.0, 1: 2.1, 2: 1.9, 3: 9.0, 4: 9.0})  # seeds 3, 4 are not paired
    _baseline(repro, "residual", {0: 2.0, 1: 2.05, 2: 2.0})
    cell = {(c.hypothesis.name, c.kind): c for c in repro.cells(depths=(100,))}
    for kind, finals in (("gated", (1.2, 1.35, 1.25)), ("residual", (1.9, 1.95, 1.9))):
        for seed, folder in enumerate(cell[("bn-eps", kind)].job.folders):
            _run(folder, seed, [finals[seed] + 0.2, finals[seed]], 0.7 if kind == "gated" else None)
    rows = {r["metric"]: r for r in repro.results(repro.cells(depths=(100,)))}
    gated = rows["test error (%), gated, d=100, bn-eps"]
    assert gated["values"] == [1.2, 1.35, 1.25] and gated["ours"] == pytest.approx(1.27)
    assert gated["baseline"]["seeds"] == [0, 1, 2] and gated["baseline"]["mean"] == pytest.approx(2.0)
    assert gated["vs_baseline"]["values"] == [-0.8, -0.75, -0.65] and gated["vs_baseline"]["sign"] == "below 0"
    assert gated["best_epoch"]["values"] == gated["values"] and "--set bn_eps=1e-3" in gated["command"]
    assert repro.closes_gap(gated) and "CLOSES THE GAP" in repro.verdict(gated)
    residual = rows["test error (%), residual, d=100, bn-eps"]
    assert residual["vs_baseline"]["sign"] == "below 0" and not repro.closes_gap(residual)  # 1.92 + interval > the paper's 1.5
    k = rows["mean k, d=100, bn-eps"]
    assert k["vs_baseline"]["sign"] == "above 0" and repro.closes_gap(k)  # 0.1 -> 0.7, the paper's 0.67
    claim = rows["gated - residual test error (points), d=100, bn-eps"]
    assert claim["values"] == [-0.7, -0.6, -0.65] and claim["holds"] == "gated < residual" and claim["epochs"] == 2
    assert not any(r.get("hypothesis") == "first-linear" for r in rows.values())  # nothing ran: no rows


def test_a_shared_process_still_gives_each_hypothesis_its_own_rows(repro) -> None:
    _baseline(repro, "gated", {0: 2.0, 1: 2.1, 2: 1.9})
    points = _shared(repro, 100, (0, 1, 2))
    for name, finals in (("he-init", (1.5, 1.6, 1.7)), ("k-glorot", (2.5, 2.6, 2.4))):
        for seed, folder in enumerate(points[name]):
            _run(folder, seed, [finals[seed]], 0.3 if name == "he-init" else 0.9)
    rows = {r["metric"]: r for r in repro.results(repro.cells(depths=(100,)))}
    he, k = rows["test error (%), gated, d=100, he-init"], rows["test error (%), gated, d=100, k-glorot"]
    assert he["values"] == [1.5, 1.6, 1.7] and he["vs_baseline"]["values"] == [-0.5, -0.5, -0.2]
    assert k["values"] == [2.5, 2.6, 2.4] and k["vs_baseline"]["values"] == [0.5, 0.5, 0.5]
    assert rows["mean k, d=100, he-init"]["values"] == [0.3] * 3 and rows["mean k, d=100, k-glorot"]["values"] == [0.9] * 3
    assert he["spec"] == "mlp(depth=100, width=50, block=gated(residual))"
    assert "he-init+k-glorot-gated-d100.arch --recipe gated-mnist --grouped" in he["command"]


def test_rows_take_every_seed_trained_whatever_seeds_are_asked_for(repro) -> None:
    """--seeds 3 4 trains a new group beside seeds 0-2: the rows hold all five, of the hypothesis's own job,
    of its shared processes and of a baseline group trained with other seeds (review s5 finding 2)."""
    _baseline(repro, "gated", {0: 2.0, 1: 2.1, 2: 1.9})
    for seed, final in ((5, 2.2), (6, 2.3)):  # a Table 1 group trained with --seeds 5 6
        _run(repro.RUNS / f"gated-mnist/gated-d100-seed{seed}", seed, [final], 0.1)
    asked = repro.cells(hypotheses=(repro.BY_NAME["bn-eps"],), depths=(100,), seeds=(3, 4))
    for seeds in ((0, 1, 2), (3, 4), (5, 6)):
        own = repro._own_job(repro.BY_NAME["bn-eps"], "gated", 100, seeds, smoke=False)
        for seed, folder in zip(seeds, own.folders):
            _run(folder, seed, [1.0 + seed / 10], 0.5, seeds)
    for seeds in ((0, 1, 2), (3, 4)):
        for seed, folder in zip(seeds, _shared(repro, 100, seeds)["he-init"]):
            _run(folder, seed, [1.5 + seed / 10], 0.3)
    rows = {r["metric"]: r for r in repro.results(asked)}
    bn = rows["test error (%), gated, d=100, bn-eps"]
    assert bn["seeds"] == [0, 1, 2, 3, 4, 5, 6] and bn["baseline"]["seeds"] == [0, 1, 2, 5, 6]
    assert bn["vs_baseline"]["seeds"] == [0, 1, 2, 5, 6] and bn["command"].count("--seeds") == 3
    he = repro.results(repro.cells(depths=(100,), seeds=(0, 1, 2)))
    he_row = next(r for r in he if r["metric"] == "test error (%), gated, d=100, he-init")
    assert he_row["seeds"] == [0, 1, 2, 3, 4] and he_row["command"].count("--grouped") == 2


def test_only_training_writes_a_shared_sweep_file_and_it_refuses_seeds_a_shared_process_of_others_has(
        repro, tmp_path, monkeypatch) -> None:
    # Review s6 findings 3 and 17: --collect-only --seeds 3 4 wrote new sweep files, and --seeds 0 1 2 3
    # beside the trained seeds 0-2 would have trained 0-2 again in another process (another file and folder).
    monkeypatch.setattr(repro, "ROOT", tmp_path)
    monkeypatch.setattr(repro, "SPECS", tmp_path / "reproduce" / "gated_hypotheses")
    monkeypatch.setattr(repro.jobs_module, "RESULTS", tmp_path / "results.json")
    _shared(repro, 100, (0, 1, 2))  # the default seeds' shared process has trained
    shared = (repro.BY_NAME["he-init"], repro.BY_NAME["k-glorot"])
    repro.main(["--collect-only", "--seeds", "3", "4"])
    assert not repro.SPECS.exists()
    with pytest.raises(SystemExit, match=r"d100-seeds0-1-2-3: seeds 0,1,2,3 asked for, but he-init\+k-glorot-gated-d100 "
                                         r"trained seeds 0,1,2 in one shared process"):
        repro.before_training(repro.cells(shared, (100,), (0, 1, 2, 3)), (0, 1, 2, 3))
    assert not repro.SPECS.exists()
    repro.before_training(repro.cells(shared, (100,), (0, 1, 2)), (0, 1, 2))  # the same seeds: it resumes
    repro.before_training(repro.cells(shared, (100,), (3, 4)), (3, 4))  # none of them trained: a new process
    assert sorted(p.name for p in repro.SPECS.iterdir()) == ["he-init+k-glorot-gated-d100-seeds3-4.arch",
                                                             "he-init+k-glorot-gated-d100.arch"]
