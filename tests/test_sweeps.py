"""Sweeps that train (issue 13): points and their names, shards, --max-params, the manifest, the launchers,
and `archlang runs` over the run folders they leave.

The trained sweeps run real `python -m archlang train` processes on a 64-image MNIST; the module-scoped
fixture trains the 4-point sweep once for the tests that read it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from archlang.cli import main
from archlang.errors import ArchlangError, Source
from archlang.launch.command import forwarded_flags
from archlang.launch.points import folder_name, parse_shard, shard, slurm_shard, sweep_points, within_budget
from archlang.runs.sweep import manifest_of, read_manifest, write_manifest
from tests.conftest import write_mnist

SWEEP = "mlp(depth={2, 4}, width={8, 16})"
NAMES = ["depth=2,width=8", "depth=2,width=16", "depth=4,width=8", "depth=4,width=16"]
TINY = ["--epochs", "1", "--subset", "64", "--no-progress"]


def test_points_are_named_by_their_values_and_are_concrete_specs():
    points = sweep_points(Source("mlp(depth={2, 4}, width=8)\ntrain(lr={0.1, 0.05})"))
    assert [p.name for p in points] == ["depth=2,lr=0.1", "depth=2,lr=0.05", "depth=4,lr=0.1", "depth=4,lr=0.05"]
    assert points[1].spec == "mlp(depth=2, width=8)\ntrain(lr=0.05)\n"
    assert [p.params for p in points] == [6562, 6562, 6738, 6738]  # the IR's count, as `archlang params`
    assert points[0].family == "mlp"


def test_folder_names_keep_only_safe_characters_and_stay_distinct():
    assert folder_name((("depth", "28"), ("k", "10"))) == "depth=28,k=10"
    spaced, underscored = folder_name((("act", '"a b"'),)), folder_name((("act", '"a_b"'),))
    assert spaced.startswith("act=_a_b-") and underscored.startswith("act=_a_b-") and spaced != underscored
    assert "/" not in folder_name((("path", '"../../etc"'),))
    assert len(folder_name((("w", "[" + ", ".join(["16"] * 200) + "]"),))) <= 130


def test_shards_cover_every_point_exactly_once():
    points = sweep_points(Source("mlp(depth={2, 3, 4}, width={8, 16, 32})"))
    covered = [p.index for i in (1, 2, 3, 4) for p in shard(points, (i, 4))]
    assert sorted(covered) == list(range(9))
    assert [p.index for p in shard(points, (2, 4))] == [1, 5]


def test_shard_flag_and_slurm_variables():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(ArchlangError) as err:
            parse_shard(bad)
        assert err.value.message == f"--shard takes I/N with 1 <= I <= N, got '{bad}'"
    assert slurm_shard({}) is None
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == (4, 4)
    assert slurm_shard({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}) == (1, 4)
    with pytest.raises(ArchlangError) as err:
        slurm_shard({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert err.value.message == ("SLURM array task 9 (from SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN) "
                                 "is outside 0..3")


def test_max_params_skips_points_with_a_line_each():
    points = sweep_points(Source(SWEEP))
    keep, lines = within_budget(points, 10_000)
    assert [p.name for p in keep] == ["depth=2,width=8", "depth=4,width=8"]
    assert lines == ["skipping depth=2,width=16: 13,370 parameters > --max-params 10,000",
                     "skipping depth=4,width=16: 13,978 parameters > --max-params 10,000"]


def test_max_params_on_the_command_line_trains_nothing(tmp_path, capsys):
    assert main(["train", SWEEP, "--out", str(tmp_path), "--name", "s", "--max-params", "1000", *TINY]) == 0
    err = capsys.readouterr().err
    assert err.count("parameters > --max-params 1,000") == 4
    assert "4 points, 0 to train here" in err
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["sweep.json"]


def test_manifest_round_trip_and_refuses_another_sweep(tmp_path):
    points = sweep_points(Source(SWEEP))
    write_manifest(tmp_path, manifest_of(SWEEP, [p.as_dict() for p in points]))
    manifest = read_manifest(tmp_path)
    assert manifest is not None and [p.name for p in manifest.points] == NAMES
    assert manifest.varying == ["depth", "width"] and manifest.points[3].params == 13978
    write_manifest(tmp_path, manifest_of(SWEEP, [p.as_dict() for p in points]))  # the same sweep again: fine (shards write alike)
    with pytest.raises(ArchlangError) as err:
        other = sweep_points(Source("mlp(depth={2, 3}, width=8)"))
        write_manifest(tmp_path, manifest_of("x", [p.as_dict() for p in other]))
    assert err.value.message == "this folder holds another sweep (its points differ)"
    (tmp_path / "sweep.json").write_text('{"spec": 1}')
    with pytest.raises(ArchlangError) as err:
        read_manifest(tmp_path)
    assert err.value.message.startswith("sweep.json is damaged (spec: ")


def test_forwarded_flags_parse_back_to_the_same_values():
    from archlang.train.command import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    argv = ["train", SWEEP, "--epochs", "3", "--lr", "0.05", "--k-decay", "--bf16", "--set", "milestones=[0.5, 0.75]",
            "--set", "dataset=mnist", "--parallel", "2", "--shard", "1/2", "--max-params", "9", "--out", "x"]
    args = parser.parse_args(argv)
    words = forwarded_flags(args.train_parser, args)
    assert "--parallel" not in words and "--shard" not in words and "--out" not in words and "--max-params" not in words
    again = parser.parse_args(["train", "p", *words])
    for dest in ("epochs", "lr", "k_decay", "bf16", "set_fields"):
        assert getattr(again, dest) == getattr(args, dest)


def test_a_sweep_cannot_be_resumed_with_resume(tmp_path, capsys):
    assert main(["train", SWEEP, "--resume", str(tmp_path)]) == 2
    assert "--resume continues one run; a sweep continues by running the same command again" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_sweep(tmp_path_factory) -> tuple[Path, Path, str]:
    """The 4-point sweep trained with --parallel 2: (sweep folder, data folder, the parent's stderr)."""
    root = tmp_path_factory.mktemp("sweep")
    data = write_mnist(root / "data")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", SWEEP, "--out", str(root / "runs"), "--name", "mlp-sweep", "--data-dir", str(data),
                     "--parallel", "2", *TINY])
    assert code == 0, err.getvalue()
    return root / "runs" / "mlp-sweep", data, err.getvalue()


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_sweep_with_parallel_gives_one_run_folder_per_point_and_a_manifest(trained_sweep):
    sweep, _, err = trained_sweep
    assert sorted(p.name for p in sweep.iterdir() if (p / "run.json").exists()) == sorted(NAMES)
    assert [p.name for p in read_manifest(sweep).points] == NAMES
    for name in NAMES:
        assert _summary(sweep / name)["status"] == "finished"
        assert (sweep / name / "spec.arch").read_text().startswith("mlp(depth=")
        assert (sweep / "logs" / f"{name}.log").is_file()  # --parallel: each point's output in its own log
    assert err.count(": finished (exit 0, ") == 4


def test_the_same_command_again_trains_nothing(trained_sweep, capsys):
    sweep, data, _ = trained_sweep
    before = {n: (sweep / n / "summary.json").stat().st_mtime_ns for n in NAMES}
    assert main(["train", SWEEP, "--out", str(sweep.parent), "--name", sweep.name, "--data-dir", str(data),
                 "--parallel", "2", *TINY]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.endswith("finished, skipped")] == \
        [f"{n}: finished, skipped" for n in NAMES]
    assert before == {n: (sweep / n / "summary.json").stat().st_mtime_ns for n in NAMES}


def test_shards_one_and_two_of_two_take_each_point_once(trained_sweep, capsys, monkeypatch):
    sweep, data, _ = trained_sweep
    base = ["train", SWEEP, "--out", str(sweep.parent), "--name", sweep.name, "--data-dir", str(data), *TINY]
    seen = []
    for i in (1, 2):
        assert main([*base, "--shard", f"{i}/2"]) == 0
        err = capsys.readouterr().err
        assert f"4 points, 2 to train here (shard {i}/2)" in err
        seen += [line.split(":")[0] for line in err.splitlines() if line.endswith("finished, skipped")]
    assert sorted(seen) == sorted(NAMES)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert main(base) == 0
    assert "(shard 2/2)" in capsys.readouterr().err


def test_runs_prints_the_four_rows(trained_sweep, capsys):
    sweep, _, _ = trained_sweep
    assert main(["runs", str(sweep), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["depth"], r["width"]) for r in rows] == [("2", "8"), ("2", "16"), ("4", "8"), ("4", "16")]
    for row, name in zip(rows, NAMES):
        summary = _summary(sweep / name)
        assert row["run"] == str(sweep / name) and row["status"] == "finished" and row["epochs_done"] == "1"
        assert float(row["final_test_error"]) == summary["final_test_error"]
        assert float(row["best_test_error"]) == summary["best_test_error"]
        assert int(row["params"]) == summary["params"]
    assert main(["runs", str(sweep)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == ("| depth | width | family | params | epochs | final test err % | best test err % "
                        "| status | wall time |")
    assert len(table) == 6 and table[2].startswith("| 2 | 8 | mlp | 6,562 | 1/1 | ")


def test_runs_plot_writes_png_and_svg(trained_sweep, tmp_path, capsys):
    sweep, _, _ = trained_sweep
    assert main(["runs", str(sweep), "--plot", "final_test_error", "--x", "depth", "-o", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "fig.svg").read_text()
    assert "<svg" in svg and "mlp width=8" in svg and "mlp width=16" in svg  # one line per other value
    assert main(["runs", str(sweep), "--plot", "final_test_error", "--x", "dept"]) == 2
    assert "hint: did you mean 'depth'?" in capsys.readouterr().err


def test_runs_of_a_point_not_started_is_a_new_row(trained_sweep, tmp_path, capsys):
    sweep, _, _ = trained_sweep
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    shutil.rmtree(copy / NAMES[3])
    assert main(["runs", str(copy), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[3]["status"] == "new" and rows[3]["params"] == 13978 and rows[3]["final_test_error"] is None


def test_submitit_local_executor_runs_a_two_point_sweep(tmp_path, capsys):
    pytest.importorskip("submitit")
    data = write_mnist(tmp_path / "data")
    assert main(["train", "mlp(depth=2, width={8, 16})", "--out", str(tmp_path / "runs"), "--name", "s",
                 "--data-dir", str(data), "--launcher", "submitit-local", *TINY]) == 0
    err = capsys.readouterr().err
    assert "submitted 2 jobs" in err
    for name in ("width=8", "width=16"):
        assert _summary(tmp_path / "runs" / "s" / name)["status"] == "finished"
    assert any((tmp_path / "runs" / "s" / "submitit").iterdir())  # submitit's own job files and logs


def test_sweep_flag_errors_are_one_message_each(tmp_path, capsys, monkeypatch):
    base = ["train", SWEEP, "--out", str(tmp_path), *TINY]
    assert main([*base, "--parallel", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --parallel must be at least 1, got 0")
    assert main([*base, "--shard", "3/2"]) == 2
    assert "--shard takes I/N with 1 <= I <= N, got '3/2'" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert main([*base, "--launcher", "submitit"]) == 2
    err = capsys.readouterr().err
    assert "--launcher submitit submits to SLURM, but this machine has no sbatch" in err
    assert "hint: run it on a SLURM login node; --launcher submitit-local runs the same jobs as local processes" in err


def test_runs_shows_a_damaged_run_as_unreadable_and_the_others(trained_sweep, tmp_path, capsys):
    sweep, _, _ = trained_sweep
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    (copy / NAMES[0] / "summary.json").write_text("{not json")
    assert main(["runs", str(copy), "--csv"]) == 0
    out = capsys.readouterr()
    assert [r["status"] for r in csv.DictReader(io.StringIO(out.out))] == ["unreadable", *["finished"] * 3]
    assert f"warning: {copy / NAMES[0] / 'summary.json'}: not valid JSON (" in out.err


def test_runs_of_a_folder_without_runs_is_one_message(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 2
    assert "no run folders here (no run.json, no sweep.json)" in capsys.readouterr().err
