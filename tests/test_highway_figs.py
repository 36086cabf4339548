"""reproduce/highway_figs.py and the analyses behind it (Highway Figs. 2-4): per-block gate maps by hand,
lesioning as a gate bias of -inf, class differences, which run is "best", and the no-run exit."""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from threads import one_thread  # noqa: F401 (autouse: one torch thread in this module)

from archlang.analysis.gates import fraction_below, gate_biases, highway_layers, highway_maps, over_gates
from archlang.analysis.prune import Lesion, lesion
from archlang.analysis.run import error_percent
from archlang.analysis.transform import transfer
from archlang.compiler import compile_spec
from archlang.runs import LoadedRun, MetricsRow, RunFolder, RunIdentity, Summary
from archlang.runs.sweep import manifest_of, write_manifest
from tests.conftest import write_mnist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "reproduce"))  # the scripts import their neighbour `jobs` so

import highway_figs
import jobs

SPEC = 'mlp(depth=3, width=6, block=highway, bn=false, act="tanh", bias_init=0.0)'


class Batches:
    """The loader interface evaluate() and lesion() read: batches(epoch) -> (x, label) pairs."""

    def __init__(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.pairs = pairs

    def batches(self, _epoch: int):
        return iter(self.pairs)


def _net(seed: int = 0):
    torch.manual_seed(seed)
    compiled = compile_spec(SPEC)
    return compiled, compiled.build().eval()


def _by_hand(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L, B) gate outputs T and block outputs y from the weights: y = tanh(W_h h + b_h) T + h (1 - T)."""
    first = model[1]
    h = torch.tanh(x.flatten(1) @ first.weight.T + first.bias)
    ts, ys = [], []
    for _, layer in highway_layers(model):
        t = torch.sigmoid(h @ layer.t.weight.T + layer.t.bias)
        h = torch.tanh(h @ layer.h.weight.T + layer.h.bias) * t + h * (1 - t)
        ts.append(t)
        ys.append(h)
    return torch.stack(ts, 1).double(), torch.stack(ys, 1).double()


def test_per_block_maps_are_the_hand_computed_gates_of_every_layer_class_and_the_sample() -> None:
    _, model = _net()
    x = torch.randn(30, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(30) % 7  # classes 7-9 never seen
    maps = highway_maps(model, [(x[:13], y[:13]), (x[13:], y[13:])], 10, sample_index=17)  # uneven batches
    with torch.no_grad():
        t, out = _by_hand(model, x)
    assert maps.mean_t.shape == (3, 6)
    assert torch.allclose(maps.mean_t, t.mean(0), atol=1e-6, rtol=0)
    for c in range(7):
        assert torch.allclose(maps.class_mean_t[c], t[y == c].mean(0), atol=1e-6, rtol=0)
    assert torch.isnan(maps.class_mean_t[7:]).all() and maps.class_counts.tolist() == [5, 5] + [4] * 5 + [0] * 3
    assert torch.allclose(maps.sample_t, t[17], atol=1e-6, rtol=0) and maps.sample_label == 17 % 7
    assert torch.allclose(maps.sample_y, out[17], atol=1e-6, rtol=0)
    assert torch.equal(gate_biases(model), torch.stack([m.t.bias.detach() for _, m in highway_layers(model)]).double())


def test_a_conv_layers_blocks_are_its_channels_averaged_over_positions_padded_to_the_widest_stage() -> None:
    torch.manual_seed(0)
    model = compile_spec("highway_cnn(cifar_b)").build().eval()  # stages of 32, 80 and 128 channels
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 1, 3])
    inputs: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])) for _, m in highway_layers(model)]
    maps = highway_maps(model, [(x, y)], 10, sample_index=2)
    for hook in hooks:
        hook.remove()
    widths = [m.t.bias.numel() for _, m in highway_layers(model)]
    assert widths == [32] * 4 + [80] * 5 + [128] * 5 and maps.mean_t.shape == gate_biases(model).shape == (14, 128)
    for i, (w, (_, layer)) in enumerate(zip(widths, highway_layers(model))):
        with torch.no_grad():
            t = layer.transform_gate(inputs[i]).double()  # (N, C, H, W)
        assert torch.allclose(maps.mean_t[i, :w], t.mean((0, 2, 3)), atol=1e-6, rtol=0)
        assert torch.allclose(maps.sample_t[i, :w], t[2].mean((1, 2)), atol=1e-6, rtol=0)
        assert torch.isnan(maps.mean_t[i, w:]).all() and torch.isnan(gate_biases(model)[i, w:]).all()


def test_class_differences_weighted_by_class_counts_sum_to_zero() -> None:
    _, model = _net(2)
    x = torch.randn(57, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 10, (57,), generator=torch.Generator().manual_seed(4))
    y[:10] = torch.arange(10)  # every class present, in unequal numbers
    maps = highway_maps(model, [(x[:20], y[:20]), (x[20:], y[20:])], 10)
    weighted = (maps.class_counts[:, None, None] * maps.class_difference()).sum(0)
    assert maps.class_difference().abs().max() > 1e-3  # the classes do differ
    assert weighted.abs().max() < 1e-9


def test_lesioning_a_layer_is_the_network_with_that_layers_gate_bias_at_minus_infinity() -> None:
    compiled, model = _net(5)
    x = torch.randn(200, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        labels = model(x).argmax(1)  # the unlesioned net is right on every image
    loader = Batches([(x[:120], labels[:120]), (x[120:], labels[120:])])
    baseline, lesions = lesion(LoadedRun(compiled, model, None, {}, {}), loader)
    assert baseline == 0.0 and [x.layer for x in lesions] == [1, 2, 3] and max(x.error for x in lesions) > 0
    for found in lesions:
        closed = copy.deepcopy(model)
        with torch.no_grad():
            closed.get_submodule(found.module_path).t.bias.fill_(float("-inf"))
            assert torch.equal(closed(x), transfer(model, compiled.network, {found.module_path}).eval()(x))
        assert found.error == error_percent(closed, loader)


def test_the_early_layers_that_matter_end_before_layer_45_and_the_layers_after_45_are_counted_apart() -> None:
    # Sec. 4.2: early layers matter, 15-45 are idle, ~60% idle: the layers after 45 matter too, and they must
    # not move where the early stretch ends (the paper's "about 15").
    errors = [9.0, 3.0, 1.4, 1.6, 1.2, 1.5]
    numbers = highway_figs.lesion_numbers(0.5, [Lesion(i, f"{i}", e) for i, e in enumerate(errors, 1)])
    assert numbers == {"used": [1, 2, 4], "early_end": 4, "late_used": None, "worst_layer": 1, "worst": 9.0,
                       "idle_most": None}
    added = {3: 4.0, 14: 1.5, 15: 0.25, 30: 1.0, 46: 5.0, 49: 2.0}  # the paper's shape: early, idle, late
    paper_like = [Lesion(i, f"{i}", 0.5 + added.get(i, 0.0)) for i in range(1, 50)]
    numbers = highway_figs.lesion_numbers(0.5, paper_like)
    assert numbers["early_end"] == 14 and numbers["late_used"] == [46, 49] and numbers["used"] == [3, 14, 46, 49]
    assert numbers["idle_most"] == 1.0  # layers 15-45 only: not 46 (1.0 is not over 1 point: 30 is idle)


def _fake_run(path: Path, status: str, errors: list[float], losses: list[float]) -> None:
    run = RunFolder.create(path)
    run.write_identity(RunIdentity("x", "x", "", {}, "0" * 64), {})
    for epoch, (error, loss) in enumerate(zip(errors, losses), 1):
        run.append_metrics(MetricsRow(epoch=epoch, train_loss=loss, train_error=error, lr=0.1, seconds=1.0))
    run.write_summary(Summary(status=status, epochs_done=len(errors), epochs=3))  # type: ignore[arg-type]
    run.unlock()


def test_the_best_run_is_the_finished_tanh_run_with_the_lowest_training_error_reached(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "RUNS", tmp_path)
    sweep = tmp_path / "highway-fig1" / f"highway-{highway_figs.LAYERS}-part1"
    points = {  # name: (activation, status, training error per epoch, training loss per epoch)
        "low-final-loss": ("tanh", "finished", [5.0, 0.4, 0.5], [1.0, 0.02, 0.01]),
        "best": ("tanh", "finished", [4.0, 0.3, 0.6], [1.0, 0.03, 0.05]),
        "tie-higher-loss": ("tanh", "finished", [4.0, 0.3, 0.6], [1.0, 0.03, 0.09]),
        "relu": ("relu", "finished", [0.1, 0.1, 0.1], [0.01] * 3),
        "diverged": ("tanh", "diverged", [0.05], [0.01]),
        "unfinished": ("tanh", "stopped", [0.01], [0.01]),
    }
    records = [{"index": i, "name": name, "values": {"a": f'"{act}"'}, "spec": "x", "params": 0}
               for i, (name, (act, *_)) in enumerate(points.items())]
    sweep.mkdir(parents=True)
    write_manifest(sweep, manifest_of("x", records))
    for name, (_, status, errors, losses) in points.items():
        _fake_run(sweep / name, status, errors, losses)
    assert [c.run.path.name for c in highway_figs.ranked(highway_figs.search_runs())] == [
        "best", "tie-higher-loss", "low-final-loss"]
    assert highway_figs.choose(argparse.Namespace(run=str(sweep / "relu"), threads=1))[0] == sweep / "relu"
    with pytest.raises(highway_figs.ArchlangError, match="the run is stopped, not finished"):
        highway_figs.choose(argparse.Namespace(run=str(sweep / "unfinished"), threads=1))


def _search_with_weights(tmp_path: Path, data: Path, seeds: range, constant: dict[int, int] | None = None) -> Path:
    """A depth-50 part1 sweep folder of finished tanh runs with real (random, seeded) weights, one per seed;
    seed s's net answers class constant[s] for every image where given."""
    sweep = tmp_path / "highway-fig1" / f"highway-{highway_figs.LAYERS}-part1"
    sweep.mkdir(parents=True)
    records = [{"index": s, "name": f"s{s}", "values": {"a": '"tanh"'}, "spec": SPEC, "params": 0} for s in seeds]
    write_manifest(sweep, manifest_of("x", records))
    for seed in seeds:
        compiled, model = _net(seed)
        if constant:
            with torch.no_grad():
                model[-1].weight.zero_()
                model[-1].bias.copy_(torch.eye(10)[constant[seed]])
        run = RunFolder.create(sweep / f"s{seed}")
        run.write_identity(RunIdentity(SPEC, compiled.canonical, "", {}, "0" * 64),
                           {"dataset": "mnist", "data_dir": str(data)})
        run.write_model(model.state_dict())
        run.write_summary(Summary(status="finished", epochs_done=1, epochs=1))
        run.unlock()
    return sweep


def _meters(sweep: Path, meter: dict[str, float]) -> None:
    for name, error in meter.items():
        RunFolder(sweep / name).rewrite_metrics([MetricsRow(epoch=1, train_loss=1.0, train_error=error, lr=0.1,
                                                            seconds=1.0)])


def test_footnote_3_is_the_lowest_evaluated_training_error_of_the_three_best_by_the_meter(
        tmp_path, monkeypatch, capsys) -> None:
    data = write_mnist(tmp_path / "data", train=55)
    labels = np.repeat(np.arange(10), np.arange(1, 11)).astype(np.uint8)  # class c: c + 1 of the 55 images
    (data / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(np.array([2049, 55], ">i4").tobytes()
                                                                     + labels.tobytes())
    monkeypatch.setattr(jobs, "RUNS", tmp_path)
    # s9 answers class 9 for every image (error 45/55), s8 class 8 (46/55), ...: s9 is the truly best net.
    sweep = _search_with_weights(tmp_path, data, range(6, 10), constant={s: s for s in range(6, 10)})
    # The meter ranks them backwards: s9 comes fourth and is never evaluated (RECHECK = 3); of the
    # three evaluated the lowest training error is s8's, last by the meter.
    _meters(sweep, {"s6": 1.0, "s7": 2.0, "s8": 3.0, "s9": 4.0})
    path, why = highway_figs.choose(argparse.Namespace(run=None, threads=1, data_dir=str(data), subset=None))
    assert path == sweep / "s8" and f"{100 * 46 / 55:.3g}% (its meter's 3%)" in why and "the 3 lowest" in why
    assert "footnote 3: 3 training-set evaluations, CPU seconds" in capsys.readouterr().out


def test_only_the_search_best_over_all_images_is_merged_and_drawn_as_figures_2_4(
        tiny_mnist, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(jobs, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(highway_figs, "FIGURES", {n: tmp_path / f"fig{n}.png" for n in (2, 3, 4)})
    sweep = _search_with_weights(tmp_path / "runs", tiny_mnist, range(2))
    _meters(sweep, {"s0": 1.0, "s1": 2.0})
    data = ["--data-dir", str(tiny_mnist)]
    for argv, run in ((["--run", str(sweep / "s1")], "s1"), (["--subset", "32"], "s0")):
        assert highway_figs.main(argv + data) == 0
        assert "not merged" in capsys.readouterr().out
        beside = sweep / run / "analysis"
        assert all((beside / f"highway_fig{n}.png").is_file() for n in (2, 3, 4))
        assert json.loads((beside / "highway_figs.json").read_text())[0]["table"] == "Figures 2-4"
        assert not jobs.RESULTS.exists() and not any(p.exists() for p in highway_figs.FIGURES.values())
    assert highway_figs.main(data) == 0
    merged = json.loads(jobs.RESULTS.read_text())
    assert {r["run"] for r in merged} == {str(sweep / "s0")} and all(p.is_file() for p in highway_figs.FIGURES.values())
    assert merged[0]["command"] == f"python reproduce/highway_figs.py --data-dir {tiny_mnist}"


def test_without_a_finished_run_it_says_so_in_one_line_and_exits_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(jobs, "RUNS", tmp_path)
    assert highway_figs.main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no finished depth-50 tanh highway run") and "highway_fig1.py" in err
    assert "\n" not in err
    assert highway_figs.main(["--run", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_smoke_trains_a_tiny_net_and_writes_figures_and_rows_beside_it_only(shared_mnist, tmp_path, capsys) -> None:
    committed = {p: p.read_bytes() for p in [*highway_figs.FIGURES.values(), jobs.RESULTS] if p.is_file()}
    assert highway_figs.main(["--smoke", str(tmp_path), "--data-dir", str(shared_mnist)]) == 0
    assert all((tmp_path / f"highway_fig{n}.png").stat().st_size > 10_000 for n in (2, 3, 4))
    rows = {r["metric"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    baseline = rows["training error (%), not lesioned"]
    assert "600 training images" in baseline["scale"] and baseline["sample_index"] == highway_figs.sample_index(600)
    worst = rows["training error (%), worst single-layer lesion"]
    errors = worst["per_layer_error"]
    assert len(errors) == 5 and worst["ours"] == float(f"{max(errors):.4g}")
    assert baseline["ours"] == float(f"{worst['baseline']:.4g}")
    used = [i for i, e in enumerate(errors, 1) if e - worst["baseline"] > 1.0]
    early = rows["end of the early layers that matter: last of layers 1-45 whose lesion adds more than 1 point "
                 "of training error (paper: about 15)"]
    assert early["ours"] == (max(used) if used else 0) and early["paper_value"] == 15  # a 5-layer net: all early
    assert not any(m.startswith("layers after 45") for m in rows)  # a 5-layer net has none
    assert RunFolder(tmp_path / "smoke-highway").status() == "finished"
    assert {p: p.read_bytes() for p in committed} == committed  # the committed outputs are left alone
    assert "not merged" in capsys.readouterr().out


@pytest.mark.parametrize("spec", [SPEC, "highway_cnn(variant=mnist, width=4)"], ids=["mlp", "highway_cnn"])
def test_gates_maps_draws_figures_2_and_3_of_any_highway_run(spec, tiny_mnist, tmp_path, capsys) -> None:
    from archlang.cli import main as archlang

    compiled = compile_spec(spec)
    run = RunFolder.create(tmp_path / "run")
    run.write_identity(RunIdentity(spec, compiled.canonical, "", {}, "0" * 64),
                       {"dataset": "mnist", "data_dir": str(tiny_mnist)})
    run.write_model(compiled.build().state_dict())
    run.unlock()
    assert archlang(["gates", str(run.path), "--maps", "--out", str(tmp_path / "out")]) == 0
    assert all((tmp_path / "out" / name).stat().st_size > 5_000 for name in ("gate-maps.png", "gate-classes.png"))
    assert f"plot: {tmp_path / 'out' / 'gate-classes.png'}" in capsys.readouterr().out
    assert archlang(["gates", str(run.path), "--maps", "--no-data"]) == 2
    assert "--maps needs highway layers and their data (drop --no-data)" in capsys.readouterr().err


def test_gate_statistics_count_only_the_gates_a_net_has_not_the_nan_padding_of_narrower_layers() -> None:
    # a conv highway net's stages of 2 and 4 channels: the first row is padded with NaN to 4 blocks
    mean_t = torch.tensor([[0.05, 0.5, float("nan"), float("nan")], [0.05, 0.05, 0.05, 0.9]])
    assert over_gates(mean_t) == pytest.approx((0.05 * 4 + 0.5 + 0.9) / 6)
    assert fraction_below(mean_t, 0.1) == pytest.approx(4 / 6)  # not 4 / 8
    bias = torch.tensor([[-2.5, -1.5, float("nan"), float("nan")], [-3.5, -2.0, -2.1, -1.0]])
    assert fraction_below(bias, torch.tensor([[-2.0], [-3.0]], dtype=torch.float64)) == pytest.approx(2 / 6)


def test_the_bias_2_nets_train_resumably_and_only_full_runs_are_merged_over_seeds(tmp_path, monkeypatch,
                                                                                  capsys) -> None:
    import highway_fig2_net as net

    data = write_mnist(tmp_path / "data", train=200, test=100)
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(jobs, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(net, "FIGURES", {n: tmp_path / f"fig{n}_bias2.png" for n in (2, 3, 4)})
    monkeypatch.setattr(net, "EPOCHS", 1)  # one epoch of 2 steps counts as the full run here
    flags = ["--data-dir", str(data), "--seeds", "1", "0"]
    assert net.main([*flags, "--collect-only"]) == 2  # nothing trained yet: said in one line, not a traceback
    err = capsys.readouterr().err
    assert err == "highway-figs/tanh-50-bias-2-seed0 is new; highway-figs/tanh-50-bias-2-seed1 is new\n"
    assert net.main([*flags[:2], "--seeds", "0", "--subset", "100"]) == 0  # shortened: own folder, not merged
    short = jobs.RUNS / "highway-figs" / "tanh-50-bias-2-n100-seed0"
    assert all((short / "analysis" / f"highway_fig{n}.png").is_file() for n in (2, 3, 4))
    assert not jobs.RESULTS.exists() and not any(p.exists() for p in net.FIGURES.values())
    assert net.main(flags) == 0
    merged = json.loads(jobs.RESULTS.read_text())
    assert {r["table"] for r in merged} == {"Figures 2-4 (gate bias -2)"} and all(p.is_file() for p in net.FIGURES.values())
    runs = [str(jobs.RUNS / "highway-figs" / f"tanh-50-bias-2-seed{s}") for s in (0, 1)]
    assert all(r["run"] == runs[0] and r["runs"] == runs and r["seeds"] == [0, 1] and r["n"] == 2 for r in merged)
    assert merged[0]["spec"] == compile_spec((ROOT / net.SPEC).read_text()).canonical
    assert "bias_init=-2" in merged[0]["spec"] and "--flush-denormal --epochs 1 --seed 1" in merged[0]["command"]
    bias = next(r for r in merged if r["metric"] == "fraction of gate biases below their initial value")
    assert bias["per_seed"]["0"]["initial"] == [-2.0] and bias["per_seed"]["1"]["initial"] == [-2.0]
    worst = next(r for r in merged if r["metric"] == "training error (%), worst single-layer lesion")
    by_seed = [max(worst["per_seed"][s]["per_layer_error"]) for s in ("0", "1")]
    assert worst["values"] == [round(v, 4) for v in by_seed] and worst["mean"] == round(sum(by_seed) / 2, 4)
    assert net.main([*flags, "--collect-only"]) == 0  # the finished runs analysed again: the same rows
    assert json.loads(jobs.RESULTS.read_text()) == merged


def test_every_tanh_setting_of_the_search_trains_in_one_grouped_process_and_each_is_lesioned(tmp_path, monkeypatch,
                                                                                            capsys) -> None:
    import highway_fig2_settings as net

    assert net.SPEC.read_text() == net.spec_file().text  # committed: the search's 9 tanh settings, each bias -2
    assert "bias_init=-2" in net.SPEC.read_text() and len(net.settings()) == 9
    data = write_mnist(tmp_path / "data", train=200, test=100)
    monkeypatch.setattr(jobs, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(jobs, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(net, "FIGURE", tmp_path / "fig4_settings.png")
    monkeypatch.setattr(net, "EPOCHS", 1)  # one epoch of 2 steps counts as the full run here
    flags = ["--data-dir", str(data)]
    assert net.main([*flags, "--collect-only"]) == 2  # nothing trained yet: one line, no traceback
    assert capsys.readouterr().err == "highway-figs/tanh-50-bias-2-settings is new\n"
    assert net.main(flags) == 0
    merged = json.loads(jobs.RESULTS.read_text())
    runs = net.job(1).runs
    assert len(runs) == 9 and all(r.read_group() for r in runs)  # one grouped process trained them all
    finished = [net.label(r) for r in runs if r.status() == "finished"]
    per_setting = [r for r in merged if "setting" in r]
    assert len(per_setting) == 3 * len(finished) and {r["setting"] for r in per_setting} == set(finished)
    best = {r["setting"] for r in per_setting if r["best_setting"]}
    errors = {r["setting"]: r["ours"] for r in per_setting if r["metric"].startswith("training error (%), not lesioned")}
    assert len(best) == 1 and errors[best.pop()] == min(errors.values())
    ends = [r for r in per_setting if r["metric"].startswith("end of the early layers")]
    assert all(len(r["per_layer_error"]) == 49 and r["paper_value"] == 15 for r in ends)
    diverged = merged[-1]
    assert diverged["metric"] == "settings that diverged (of 9)" and diverged["ours"] == 9 - len(finished)
    assert {r["table"] for r in merged} == {net.TABLE} and "--grouped" in merged[0]["command"] and net.FIGURE.is_file()
    assert net.main([*flags, "--collect-only"]) == 0  # analysed again: the same rows
    assert json.loads(jobs.RESULTS.read_text()) == merged
