"""`archlang train SWEEP --grouped`: a sweep's points of one architecture trained as the copies of one
grouped model, each with its own recipe and initial values, each equal to its own single run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from threads import one_thread  # noqa: F401 (autouse: one torch thread in this module)

import archlang
from archlang.cli import main
from archlang.errors import ArchlangError, Source
from archlang.ir.structure import check_one_architecture, structure_key
from archlang.launch import groups, jobs
from archlang.launch.points import sweep_points
from archlang.runs import RunFolder, load_run
from archlang.runs.sweep import manifest_of, write_manifest
from archlang.train import TrainOptions, train
from archlang.train.grouped_run import train_sweep_group
from archlang.train.grouping import check_groupable, check_shared
from archlang.train.recipes import build_recipe

# Three points of one architecture that differ in lr, momentum, weight decay, decay factor, seed and the
# highway bias (an initial value): 2 steps an epoch on tiny_mnist's 64 images, 2 epochs.
SWEEP = """let (lr, m, wd, g, s, b) = {(0.05, 0.9, 0.0, 0.9, 0, -1), (0.02, 0.5, 1e-3, 0.5, 3, -3), (0.1, 0.0, 1e-4, 1.0, 1, -2)}
mlp(depth=3, width=12, block=highway, bn=false, bias_init=b, act="tanh")
train(lr=lr, momentum=m, weight_decay=wd, gamma=g, seed=s, schedule="exponential", nesterov=false, epochs=2,
      batch_size=32, optimizer="sgd", dataset="mnist")
"""


def _options(**kw: Any) -> TrainOptions:
    return TrainOptions(progress=False, log=lambda message: None, threads=1, **kw)


def _sweep_root(tmp_path: Path, text: str = SWEEP) -> tuple[Path, list]:
    points = sweep_points(Source(text))
    root = tmp_path / "sweep"
    root.mkdir()
    write_manifest(root, manifest_of(text, [p.as_dict() for p in points]))
    return root, points


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _rows(folder: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_each_copy_equals_its_own_single_run(tiny_mnist: Path, tmp_path: Path) -> None:
    root, points = _sweep_root(tmp_path)
    folders = train_sweep_group(root, [0, 1, 2], data_dir=tiny_mnist, options=_options())
    assert [f.name for f in folders] == [p.name for p in points]
    for p, folder in zip(points, folders):
        single = train(archlang.compile_spec(p.spec), out=tmp_path / "single", name=p.name, data_dir=tiny_mnist,
                       options=_options())
        mine, theirs = _weights(folder), _weights(single)
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=0, msg=f"{p.name} {key}")
        for a, b in zip(_rows(folder), _rows(single), strict=True):
            assert a["lr"] == b["lr"] and a["test_error"] == b["test_error"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        # The same identity as `archlang train POINT`: either way of training makes the same run.
        hashes = [json.loads((f / "run.json").read_text())["run_hash"] for f in (folder, single)]
        assert hashes[0] == hashes[1]


def test_stopped_group_resumed_through_any_member_equals_straight(tiny_mnist: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight_root, _ = _sweep_root(tmp_path / "a")
    pieces_root, _ = _sweep_root(tmp_path / "b")
    straight = train_sweep_group(straight_root, [0, 2], data_dir=tiny_mnist, options=_options())
    pieces = train_sweep_group(pieces_root, [0, 2], data_dir=tiny_mnist, options=_options(max_steps=3))
    assert json.loads((pieces[1] / "summary.json").read_text())["status"] == "stopped"
    # The second member resumes the group; the first keeps its own spec (bias -1, not -2).
    assert main(["train", "--resume", str(pieces[1]), "--no-progress", "--threads", "1", "--data-dir",
                 str(tiny_mnist)]) == 0
    for a, b in zip(straight, pieces, strict=True):
        wa, wb = _weights(a), _weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), a.name
        assert _rows(a) == _rows(b)


def _groups(text: str, **overrides: Any) -> list[list[str]]:
    points = sweep_points(Source(text))
    # Folder names without the hash that names holding quotes get (points.folder_name).
    return [[re.sub(r"-[0-9a-f]{8}$", "", p.name) for p in g]
            for g in groups.group_points(Source(text), points, None, overrides)]


def test_points_group_by_architecture_and_shared_recipe_fields() -> None:
    # Initial values and per-copy recipe fields group together; activation, width and epochs split.
    assert _groups("mlp(depth=3, block=highway, bn=false, bias_init={-1, -3}, act={\"relu\", \"tanh\"})\n"
                   "train(lr={0.1, 0.01})") == [
        [f"bias_init={b},act=_{a}_,lr={lr}" for b in (-1, -3) for lr in (0.1, 0.01)] for a in ("relu", "tanh")]
    assert _groups("mlp(depth=2, width={8, 16})\ntrain(momentum={0.5, 0.9})") == [
        ["width=8,momentum=0.5", "width=8,momentum=0.9"], ["width=16,momentum=0.5", "width=16,momentum=0.9"]]
    assert _groups("mlp(depth=2)\ntrain(epochs={1, 2}, seed={0, 1})") == [
        ["epochs=1,seed=0", "epochs=1,seed=1"], ["epochs=2,seed=0", "epochs=2,seed=1"]]
    assert _groups("mlp(depth=2)\ntrain(bn_eps={1e-3, 1e-5})") == [["bn_eps=0.001"], ["bn_eps=1e-05"]]
    assert _groups("gated(mlp(depth=2, block=plain), k_init={1.0, 0.5})") == [["k_init=1.0", "k_init=0.5"]]


def test_differences_a_group_cannot_hold_are_refused_by_name() -> None:
    relu, tanh = (archlang.compile_spec(f'mlp(depth=2, block=highway, bn=false, act="{a}")').network
                  for a in ("relu", "tanh"))
    assert structure_key(relu) != structure_key(tanh)
    with pytest.raises(ArchlangError) as err:
        check_one_architecture([relu, tanh])
    assert err.value.message == ('grouped copies must share one architecture: copy 1 differs from copy 0 in '
                                 'items[3]: a relu node vs a tanh node')  # the first plain layer's
    recipes = [build_recipe("highway-mnist", overrides={"batch_size": b}).recipe for b in (100, 50)]
    with pytest.raises(ArchlangError) as err:
        check_shared(recipes, ["p0", "p1"])
    assert err.value.message == ("the grouped copies' recipes differ in batch_size (p0 and p1: 100 vs 50); "
                                 "grouped copies share it")
    # a reset of some copies zeroes their momentum slices, which equals a fresh buffer only undamped
    resets = [build_recipe("wrn-cifar", overrides={"milestones": m, "dampening": d, "nesterov": False}).recipe
              for m, d in (([60, 120, 160], 0.0), ([30, 60, 90], 0.1))]
    check_groupable([resets[0], resets[0].model_copy(update={"dampening": 0.1})], ["p0", "p1"])  # reset together
    with pytest.raises(ArchlangError) as err:
        check_groupable(resets, ["p0", "p1"])
    assert err.value.message == "grouped copies that reset momentum at different epochs need dampening=0 (p1)"


def test_the_cli_trains_groups_skips_them_when_finished_and_refuses_seeds(tiny_mnist: Path, tmp_path: Path,
                                                                          monkeypatch, capsys) -> None:
    started: list[list[str]] = []

    def in_process(argv, log):  # each group's process, run here: the planning is what this test checks
        started.append(list(argv))
        return main(list(argv))

    monkeypatch.setattr(jobs, "run_job", in_process)
    spec = tmp_path / "s.arch"
    spec.write_text("mlp(depth=2, width=8, block=highway, bn=false, bias_init={-1, -2}, act={\"relu\", \"tanh\"})\n"
                    "train(lr={0.05, 0.1}, epochs=1, batch_size=64, recipe=\"highway-mnist\", act_dummy=0)"
                    .replace(", act_dummy=0", ""))
    flags = ["--grouped", "--out", str(tmp_path / "runs"), "--data-dir", str(tiny_mnist), "--no-progress",
             "--threads", "1", "--set", "nesterov=false"]
    assert main(["train", str(spec), *flags, "--time-limit", "30"]) == 0
    assert [a[1:3] for a in started] == [["--sweep-group", str(tmp_path / "runs" / "s")]] * 2
    assert started[0][3:5] == ["--points", "0,1,4,5"] and "--time-limit" in started[0]
    root = tmp_path / "runs" / "s"
    assert sorted(jobs.run_status(f) for f in root.iterdir() if f.is_dir()) == ["finished"] * 8
    started.clear()
    capsys.readouterr()
    assert main(["train", str(spec), *flags]) == 0
    assert not started and "and 3 more: finished, skipped" in capsys.readouterr().err
    assert main(["train", str(spec), *flags, "--seeds", "2"]) == 2
    assert "error: --grouped trains a sweep's points together; it does not take --seeds" in capsys.readouterr().err


def test_a_diverging_copy_ends_diverged_and_the_others_finish(tiny_mnist: Path, tmp_path: Path) -> None:
    # lr 10 on a classifier drawn with std 100 overflows within the 4 steps (its single run too); lr 0.01 does not.
    text = ('let (lr, std) = {(0.01, 0.1), (10.0, 100.0), (0.02, 0.1)}\nmlp(depth=6, width=12, block=plain, bn=false)\n'
            'train(lr=lr, classifier_init="normal", classifier_std=std, momentum=0.9, nesterov=false, epochs=2, '
            'batch_size=32, recipe="highway-mnist")')
    root, points = _sweep_root(tmp_path, text)
    with pytest.raises(ArchlangError) as err:
        train_sweep_group(root, [0, 1, 2], data_dir=tiny_mnist, options=_options())
    assert err.value.message.startswith("1 of 3 grouped copies diverged (lr=10.0,std=100.0: loss became ")
    statuses = [json.loads((root / p.name / "summary.json").read_text())["status"] for p in points]
    assert statuses == ["finished", "diverged", "finished"]
    assert not (root / points[1].name / "model.safetensors").exists()
    # ... nor is it analysed from its non-finite slice of the group's checkpoint (the others are).
    with pytest.raises(ArchlangError) as refused:
        load_run(str(root / points[1].name))
    assert refused.value.message.startswith("grouped copy lr=10.0,std=100.0 diverged (loss became ")
    assert refused.value.message.endswith("); its weights in the group's checkpoint are not finite")
    # The diverged copy leaves the others as they would be alone (its NaNs never reach their weights):
    # the copy after it, against its single run (one, to keep the test short).
    p = points[2]
    single = train(archlang.compile_spec(p.spec), out=tmp_path / "single", name=p.name, data_dir=tiny_mnist,
                   options=_options())
    mine, theirs = _weights(root / p.name), _weights(single)
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], atol=1e-6, rtol=0, msg=f"{p.name} {key}")
    # ... nor its training metrics (the group's one meter sums every copy's loss and errors together)
    rows = [RunFolder(f).read_metrics() for f in (root / p.name, single)]
    assert [r.train_error for r in rows[0]] == [r.train_error for r in rows[1]] and len(rows[0]) == 2
    assert [r.train_loss for r in rows[0]] == pytest.approx([r.train_loss for r in rows[1]], abs=1e-6)
    # ... and a rerun of the sweep, or of a plain one, trains the diverged point no more (archlang.runs.is_done).
    todo, done = jobs.plan_jobs([points[1]], root, [], logs=False)
    assert not todo and done == [f"{points[1].name}: diverged, skipped"]
    assert groups.group_status(root, points) == "finished"


def test_a_diverged_copy_stays_diverged_when_the_group_resumes(tiny_mnist: Path, tmp_path: Path, capsys) -> None:
    # 2 steps an epoch: copy 1 overflows within 4 steps, the group stops at step 5, then resumes.
    text = ('let (lr, std) = {(0.01, 0.1), (10.0, 100.0)}\nmlp(depth=6, width=12, block=plain, bn=false)\n'
            'train(lr=lr, classifier_init="normal", classifier_std=std, momentum=0.9, nesterov=false, epochs=4, '
            'batch_size=32, recipe="highway-mnist")')
    root, points = _sweep_root(tmp_path, text)
    with pytest.raises(ArchlangError, match="1 of 2 grouped copies diverged") as first:
        train_sweep_group(root, [0, 1], data_dir=tiny_mnist, options=_options(max_steps=5))
    capsys.readouterr()
    assert main(["train", "--resume", str(root / points[1].name), "--no-progress", "--threads", "1",
                 "--data-dir", str(tiny_mnist)]) == 2
    # the reason it diverged is kept, not found again in the NaN weights it was left with
    reason = first.value.message.split(": ", 1)[1].split("); the others")[0]
    assert reason.startswith("loss became ") and reason in capsys.readouterr().err
    summaries = [json.loads((root / p.name / "summary.json").read_text()) for p in points]
    assert [s["status"] for s in summaries] == ["finished", "diverged"]
    assert summaries[0]["epochs_done"] == 4 and summaries[1]["epochs_done"] < 4
    assert not (root / points[1].name / "model.safetensors").exists()
