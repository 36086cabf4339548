"""reproduce/jobs.py: which jobs run, resume or are done, and which run folders a script collects."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import pytest

from archlang.runs import RunFolder, RunIdentity, Summary

REPRODUCE = Path(__file__).resolve().parents[1] / "reproduce"


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """reproduce/jobs.py as a module, with RUNS pointing at an empty temp folder."""
    monkeypatch.syspath_prepend(str(REPRODUCE))
    import jobs

    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    return jobs


def _run(path: Path, seed: int, status: str | None, group: tuple[int, ...] = ()) -> None:
    """A run folder with seed `seed`, ended `status` (None: still running), a member of `group` if given."""
    run = RunFolder.create(path)
    extra: dict = {"dataset": "mnist"}
    if group:
        extra["group"] = {"seeds": list(group), "folders": [f"{path.name.rsplit('-seed', 1)[0]}-seed{s}" for s in group]}
    run.write_identity(RunIdentity("mlp()", "mlp()", "", {"seed": seed, "epochs": 2}, "0" * 64, None), extra)
    if status is not None:
        run.write_summary(Summary(status=status, epochs_done=2 if status == "finished" else 1, epochs=2))
    run.unlock()


def _group(jobs, name: str, seeds: tuple[int, ...], statuses: list[str | None]) -> None:
    for seed, status in zip(seeds, statuses, strict=True):
        _run(jobs.RUNS / f"{name}-seed{seed}", seed, status, seeds)


def test_a_diverged_job_is_done_and_a_stopped_one_resumes(jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    single = jobs.Job("cell/single", "mlp()", "gated-mnist")
    _run(single.folder, 0, "diverged")
    group = jobs.Job("cell/g", "mlp()", "gated-mnist", seeds=(1, 2))
    _group(jobs, "cell/g", (1, 2), ["finished", "diverged"])
    stopped = jobs.Job("cell/s", "mlp()", "gated-mnist", seeds=(1, 2))
    _group(jobs, "cell/s", (1, 2), ["diverged", "stopped"])
    assert [j.status() for j in (single, group, stopped)] == ["diverged", "diverged", "stopped"]
    # run_all starts only the stopped group, through --resume (no job is started anew over its folder)
    started = []
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda argv, **_: started.append(argv) or _Done())
    monkeypatch.setattr(jobs.time, "sleep", lambda _s: None)
    jobs.run_all([single, group, stopped], "data", 1, 1)
    assert len(started) == 1 and started[0][started[0].index("--resume") + 1] == str(stopped.folder)


class _Done:
    returncode = 0

    def poll(self) -> int:
        return 0


def test_seeds_that_would_change_a_trained_group_are_refused_and_new_ones_form_a_group(jobs) -> None:
    _group(jobs, "cell/g", (1, 2), ["finished", "finished"])
    for seeds in ((1, 2, 3), (2,), (2, 5)):
        with pytest.raises(SystemExit, match=r"cell/g: seeds .* asked for, but g-seed\d was trained with seeds 1,2"):
            jobs.Job("cell/g", "mlp()", "gated-mnist", seeds=seeds).check_members()
    jobs.Job("cell/g", "mlp()", "gated-mnist", seeds=(1, 2)).check_members()
    jobs.Job("cell/g", "mlp()", "gated-mnist", seeds=(5, 6)).check_members()


def test_collected_takes_every_group_trained_under_the_name_whatever_seeds_are_asked_for(jobs) -> None:
    _group(jobs, "cell/g", (1, 2), ["finished", "finished"])
    _group(jobs, "cell/g", (5,), ["finished"])
    _run(jobs.RUNS / "cell/g-seedling", 0, "finished")  # not a seed folder
    asked = [jobs.Job("cell/g", "mlp()", "gated-mnist"), jobs.Job("cell/g", "mlp()", "gated-mnist", seeds=(3, 4))]
    found = jobs.collected(asked)
    assert [j.seeds for j in found] == [(), (1, 2), (5,)]
    assert sorted(jobs.seed_folders("cell/g")) == [1, 2, 5]


def test_per_seed_jobs_pass_the_seed_last_and_a_shortened_run_gets_its_own_name(jobs) -> None:
    full = jobs.per_seed("t/net", "mlp()", "r", (0, 3), ["--compile"])
    assert [j.name for j in full] == ["t/net-seed0", "t/net-seed3"] and full[1].extra == ["--compile", "--seed", "3"]
    short = jobs.per_seed("t/net", "mlp()", "r", (1,), [], epochs=2, subset=50)
    assert short[0].name == "t/net-e2-n50-seed1" and short[0].extra == ["--epochs", "2", "--subset", "50", "--seed", "1"]
    # where the script always passes --epochs, its full count names the real run
    assert jobs.per_seed("t/net", "mlp()", "r", (1,), [], epochs=100, full_epochs=100)[0].name == "t/net-seed1"
    assert jobs.shortened_name("t/net", 7, None, full_epochs=100) == "t/net-e7"


@pytest.mark.parametrize("flag", ["--parallel", "--threads"])
def test_zero_side_by_side_runs_or_threads_are_refused(jobs, flag: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        jobs.parser("t").parse_args([flag, "0"])
    assert "expected a positive integer, got 0" in capsys.readouterr().err
    assert isinstance(jobs.parser("t").parse_args([flag, "3"]), argparse.Namespace)


@pytest.mark.parametrize("script, flags", [("highway_figs", ["--threads", "0"]),
                                           ("gated_hypotheses", ["--project", "--steps", "0"]),
                                           ("highway_fig1", ["--epochs", "0"]), ("highway_fig1", ["--epochs", "-1"])])
def test_the_scripts_own_counts_are_refused_by_argparse(jobs, script: str, flags: list[str],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    # Before: a traceback (set_num_threads(0); the median of no timed steps) or an empty search.
    main = importlib.import_module(script).main
    monkeypatch.setattr(sys, "argv", [script, *flags])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and f"expected a positive integer, got {flags[-1]}" in capsys.readouterr().err


def test_no_rows_never_replace_a_tables_rows(jobs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    # Review s6 finding 4: a collection that found nothing erased the table it replaces.
    monkeypatch.setattr(jobs, "RESULTS", tmp_path / "results.json")
    jobs.merge_results([], ("P", "T"))  # nothing there: nothing to keep
    row = {"paper": "P", "table": "T", "metric": "m", "ours": 1.0}
    jobs.merge_results([row, {**row, "table": "U"}], ("P", "T"))
    before = jobs.RESULTS.read_text()
    with pytest.raises(SystemExit) as exit_:
        jobs.merge_results([], ("P", "T"))
    assert exit_.value.code == 2 and jobs.RESULTS.read_text() == before
    err = capsys.readouterr().err
    assert err.startswith("error: no T rows were collected, so its 1 rows in") and err.count("\n") == 1
    jobs.merge_results([{**row, "ours": 2.0}], ("P", "T"))  # rows do replace rows
    assert [r["ours"] for r in json.loads(jobs.RESULTS.read_text())] == [1.0, 2.0]


def test_a_committed_spec_file_is_named_without_a_write_checked_and_written_only_when_asked(jobs, tmp_path) -> None:
    spec = jobs.SpecFile(tmp_path / "s" / "a.arch", "mlp()\n", "the seed")
    assert spec.check() == spec.path and not spec.path.exists()
    assert spec.write().read_text() == "mlp()\n" and spec.write() == spec.path
    with pytest.raises(SystemExit, match="a.arch differs from what the seed gives; restore it with git"):
        jobs.SpecFile(spec.path, "mlp(depth=2)\n", "the seed").check()


def test_the_reproduce_scripts_get_pyplot_from_its_one_home() -> None:
    # Review s6 finding 14: archlang/plotting.py sets up the Agg backend; the scripts had their own copies.
    by_hand = [p.name for p in sorted(REPRODUCE.glob("*.py")) if "matplotlib.use(" in p.read_text()]
    assert by_hand == []


def test_the_table1_projection_is_each_cells_measured_epochs_in_the_scripts_schedule(jobs, monkeypatch,
                                                                                       tmp_path: Path) -> None:
    import gated_mnist

    from archlang.runs import MetricsRow

    # the two-epoch runs as the trainer would leave them: d100 compiles for 60 s, then 20 s an epoch
    epochs = {"gated-d100": [60.0, 21.0, 20.0], "residual-d100": [50.0, 10.0, 11.0]}
    stale = jobs.RUNS / gated_mnist.TIMING / "left-by-another-machine"
    stale.mkdir(parents=True)

    def fake_run_all(timing, data_dir, parallel, threads):
        assert not stale.exists() and parallel == 2 and threads == 1
        assert all(j.seeds == (0, 1, 2, 3, 4) and "--compile" in j.extra for j in timing)
        for job in timing:
            run = RunFolder.create(job.folder)
            run.write_identity(RunIdentity("mlp()", "mlp()", "", {"seed": 0, "epochs": 3}, "0" * 64, None), {})
            run.rewrite_metrics([MetricsRow(epoch=i + 1, train_loss=0.1, train_error=1.0, lr=0.002, seconds=s)
                                 for i, s in enumerate(epochs[job.name.split("/")[1]])])
            run.unlock()
        return 0.0

    monkeypatch.setattr(jobs, "run_all", fake_run_all)
    monkeypatch.setattr(gated_mnist, "TIMING_FILE", tmp_path / "timing.json")
    args = gated_mnist.parser("t").parse_args([])
    lines = gated_mnist.measured_projection((100,), ("gated", "residual"), args)
    # 60 + 99 x 20.5 = 2089.5 s; 50 + 99 x 10.5 = 1089.5 s; one each side by side: wall 2089.5 s
    assert lines[0].endswith("first epoch 60.0 s, then 20.5 s; 100 epochs 0.58 h")
    assert lines[1].endswith("first epoch 50.0 s, then 10.5 s; 100 epochs 0.30 h")
    assert lines[-1] == ("all 2 cells x 5 seeds, one process per cell, 2 side by side (1 thread each): 0.58 h wall "
                         "(0.88 h of runs; goal: 2 h)")
    (recorded,) = json.loads((tmp_path / "timing.json").read_text())["table1_projected_wall_s"]
    assert recorded == {"wall": 2089.5, "runs": 3179.0, "parallel": 2, "threads": 1,
                        "cells": {"gated-d100": 2089.5, "residual-d100": 1089.5}}
    epochs["residual-d100"] = [50.0]  # a run that died in its second epoch is named, not averaged
    with pytest.raises(SystemExit, match="residual-d100 did not train 3 epochs"):
        gated_mnist.measured_projection((100,), ("gated", "residual"), args)
