"""The papers' analyses on tiny trained runs: the numbers are checked, not only that files exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from threads import one_thread  # noqa: F401 (autouse: one torch thread in this module)

import archlang
from archlang.analysis.prune import lesion, prune
from archlang.analysis.run import data_loader, error_percent, load_run
from archlang.analysis.sdi import he_init, sdi
from archlang.analysis.transform import folded, removable_blocks
from archlang.cli import main
from archlang.layers.dirac import DiracConv2d
from archlang.layers.highway import Highway
from archlang.train import TrainOptions, train


def _train(tmp: Path, data: Path, spec: str, name: str, recipe: str | None = None) -> Path:
    opts = TrainOptions(progress=False, log=lambda message: None)
    return train(archlang.compile_spec(spec), recipe=recipe, overrides={"epochs": 1, "batch_size": 32}, out=tmp,
                 name=name, data_dir=data, subset=320, options=opts)


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory, shared_mnist: Path) -> Path:
    return _train(tmp_path_factory.mktemp("runs"), shared_mnist, "mlp(depth=6, width=24, block=gated(residual))", "gated")


@pytest.fixture(scope="module")
def highway_run(tmp_path_factory, shared_mnist: Path) -> Path:
    return _train(tmp_path_factory.mktemp("runs"), shared_mnist, "mlp(depth=3, width=24, block=highway, bn=false)", "highway")


def test_greedy_pruning_removes_smallest_gates_first_and_rebuilds_smaller_networks(gated_run: Path):
    run = load_run(str(gated_run))
    loader = data_loader(run, "test", None)
    curve = prune(run, loader, "greedy")
    summary = json.loads((gated_run / "summary.json").read_text())
    # Nothing removed: exactly the run's own test accuracy.
    assert curve.accuracy[0] == pytest.approx(100.0 - summary["final_test_error"], abs=1e-9)
    ks = {path: float(run.model.get_submodule(path).gate.k.detach()) for path in curve.order}
    assert [ks[p] for p in curve.order] == sorted(ks.values())
    block_params = archlang.compile_spec("mlp(depth=6, width=24, block=gated(residual))").total_params - \
        archlang.compile_spec("mlp(depth=4, width=24, block=gated(residual))").total_params
    assert curve.removed == [0, 1, 2, 3]
    assert [curve.params[0] - p for p in curve.params] == [0, block_params, 2 * block_params, 3 * block_params]


def test_random_pruning_spread_vanishes_at_both_ends(gated_run: Path):
    run = load_run(str(gated_run))
    loader = data_loader(run, "test", None, subset=500)
    greedy = prune(run, loader, "greedy", steps=[0, 3])
    curve = prune(run, loader, "random", steps=[0, 1, 3], seeds=4)
    assert curve.spread[0] == 0 and curve.spread[-1] == 0
    assert curve.accuracy[0] == greedy.accuracy[0] and curve.accuracy[-1] == pytest.approx(greedy.accuracy[-1])


def test_lesioning_equals_closing_the_transform_gate(highway_run: Path):
    run = load_run(str(highway_run))
    loader = data_loader(run, "train", None, subset=320)
    baseline, lesions = lesion(run, loader)
    assert baseline == pytest.approx(error_percent(run.model, loader))
    assert [x.layer for x in lesions] == [1, 2, 3]
    for x in lesions:
        model = load_run(str(highway_run)).model
        layer = model.get_submodule(x.module_path)
        assert isinstance(layer, Highway)
        with torch.no_grad():
            layer.t.weight.zero_()
            layer.t.bias.fill_(-1e4)  # sigmoid gives exactly 0: T closed
        assert x.error == pytest.approx(error_percent(model, loader))


def test_gates_command_reports_mean_k_of_the_run(gated_run: Path, capsys):
    assert main(["gates", str(gated_run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    summary = json.loads((gated_run / "summary.json").read_text())
    assert data["mean_k"] == pytest.approx(summary["mean_k"])
    assert len(data["rows"]) == 3 and (gated_run / "analysis" / "gates.png").is_file()


def test_highway_gate_activity_is_a_mean_sigmoid(highway_run: Path, capsys):
    assert main(["gates", str(highway_run), "--json", "--subset", "200"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert all(0.0 < r["mean_T"] < 1.0 for r in rows)
    assert all(r["values"]["bias"] < -1.0 for r in rows)  # started at -2, one short epoch


def _calibrated(spec: str, batches: int = 4, batch: int = 16) -> tuple[archlang.Compiled, torch.nn.Module]:
    compiled = archlang.compile_spec(spec)
    torch.manual_seed(0)
    model = compiled.build()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics = the exact average of the batches seen
    with torch.no_grad():
        model.train()
        for _ in range(batches):
            model(torch.randn(batch, *compiled.input_shape))
    return compiled, model.eval()


# DiracNets' claim is checked at 1e-5 (the issue's bound); folding BN through 18 ResNet layers
# reorders more fp32 sums, so its bound is relative to outputs of size ~1.
@pytest.mark.parametrize("spec, tolerance", [("diracnet(depth=10, k=0.5)", 1e-5),
                                             ("resnet(depth=18, input=[3, 32, 32])", 1e-4)])
def test_folding_gives_a_plain_network_with_the_same_outputs(spec: str, tolerance: float):
    compiled, model = _calibrated(spec)
    network, plain = folded(model, compiled.network)
    assert not any(item.kind == "dirac" for item in network.items)
    x = torch.randn(8, *compiled.input_shape)
    with torch.no_grad():
        assert float((model(x) - plain(x)).abs().max()) < tolerance
    assert sum(p.numel() for p in plain.parameters()) == archlang.compile_spec(
        __import__("archlang.ir.text", fromlist=["to_spec"]).to_spec(network)).total_params


def test_fold_command_writes_weights_and_a_spec(tmp_path: Path, capsys):
    _, model = _calibrated("diracnet(depth=10, k=0.5)")
    from archlang.weights import save_weights

    save_weights(model, tmp_path / "w.safetensors")
    out = tmp_path / "folded.safetensors"
    assert main(["fold", "diracnet(depth=10, k=0.5)", "--weights", str(tmp_path / "w.safetensors"),
                 "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["max_abs_diff"] < 1e-5 and result["params_after"] < result["params_before"]
    assert main(["compile", str(out.with_suffix(".arch")), "--depth", "0"]) == 0


@pytest.mark.parametrize(
    "spec, kind, expected",
    [
        ("mlp(depth=3, width=50)", "plain", 3 * 50 + 2),
        ("mlp(depth=4, width=50, block=residual)", "residual", 2 * 50 + 2),
        # The paper's +2 counts a bias variance 2/n that its own setting (constant gate bias) excludes.
        ("mlp(depth=3, width=50, block=highway, bn=false, bias_init=-4)", "highway", 2 * 50),
        ("mlp(depth=4, width=50, block=gated(residual, k_init=0.5))", "gated", 0.25),
    ],
)
def test_sampled_tsdi_matches_the_papers_closed_forms_under_he_init(spec: str, kind: str, expected: float):
    rows = sdi(archlang.compile_spec(spec), samples=30, c=-4.0, init=he_init)
    assert rows and all(r.kind == kind for r in rows)
    mean = sum(r.measured for r in rows) / len(rows)
    assert mean == pytest.approx(expected, rel=0.04)


def test_removable_blocks_skip_projection_blocks():
    compiled = archlang.compile_spec("wrn(depth=16, k=2)")
    blocks = removable_blocks(compiled.network)
    # WRN-16-2 has 2 blocks per group; the first of each changes width (projection), so 1 per group is removable.
    assert len(blocks) == 3 and all(b.kind == "residual" for b in blocks)


def test_export_onnx_and_torchscript_match_torch(tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    spec = "wrn(depth=10, k=1, block=gated(B(3,3)), input=[3, 16, 16])"
    compiled = archlang.compile_spec(spec)
    torch.manual_seed(0)
    model = compiled.build().eval()
    from archlang.weights import save_weights

    save_weights(model, tmp_path / "w.safetensors")
    onnx_path, ts_path = tmp_path / "m.onnx", tmp_path / "m.ts"
    assert main(["export", spec, "--weights", str(tmp_path / "w.safetensors"), "--onnx", str(onnx_path),
                 "--torchscript", str(ts_path)]) == 0
    x = torch.randn(5, 3, 16, 16)
    expected = model(x).detach()
    got = ort.InferenceSession(str(onnx_path)).run(None, {"input": x.numpy()})[0]
    assert float((torch.from_numpy(got) - expected).abs().max()) < 1e-5
    assert float((torch.jit.load(str(ts_path))(x).detach() - expected).abs().max()) < 1e-6


# ---- every analysis through any nesting (issue 11): targets inside repeat, let definitions, residuals --


class _Batches:
    """A loader of one fixed batch (prune and lesion only call .batches(epoch))."""

    def __init__(self, shape: tuple[int, ...], classes: int, n: int = 64) -> None:
        g = torch.Generator().manual_seed(5)
        self.x = torch.randn(n, *shape, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def batches(self, epoch: int):
        return [(self.x, self.y)]


def _loaded(spec: str, seed: int = 0):
    from archlang.analysis.run import LoadedRun

    compiled = archlang.compile_spec(spec)
    torch.manual_seed(seed)
    return LoadedRun(compiled, compiled.build().eval(), None, {}, {})


NESTED_FOLD = """
let stem = seq(conv(8), bn, relu)
let unit = residual(seq(conv(8), bn, relu, conv(8), bn), post=relu)
let gdirac = gated(residual(seq(dirac(conv(8)), bn, relu)))
seq(input(3, 8, 8), repeat(2, stem), repeat(3, unit), repeat(2, gdirac), global_avgpool, linear(4))
"""


def test_fold_reaches_every_conv_bn_pair_and_dirac_inside_repeat_and_let_definitions():
    from archlang.ir.text import to_spec

    compiled, model = _calibrated(NESTED_FOLD)
    network, plain = folded(model, compiled.network)
    text = to_spec(network)
    assert "bn" not in text and "dirac" not in text
    x = torch.randn(8, *compiled.input_shape)
    with torch.no_grad():
        assert float((model(x) - plain(x)).abs().max()) < 1e-5
    # each conv-BN pair: -2C BN parameters, +C conv bias; each Dirac conv: -2 (a and b)
    pairs = 2 + 3 * 2 + 2
    assert compiled.total_params - archlang.compile_spec(text).total_params == pairs * 8 + 2 * 2
    assert sum(p.numel() for p in plain.parameters()) == archlang.compile_spec(text).total_params


@pytest.mark.parametrize("spec", ["archlang/specs/resnet/resnet-110.arch",
                                  "seq(input(3, 8, 8), repeat(2, seq(conv(16), bn)), global_avgpool, linear(3))"])
def test_fold_command_on_nets_whose_layers_sit_inside_repeat(spec: str, tmp_path: Path, capsys):
    from archlang.parser import read_source
    from archlang.weights import save_weights

    _, model = _calibrated(read_source(spec).text, batches=1, batch=4)
    save_weights(model, tmp_path / "w.safetensors")
    out = tmp_path / "folded.safetensors"
    assert main(["fold", spec, "--weights", str(tmp_path / "w.safetensors"), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["max_abs_diff"] < 1e-4 and result["params_after"] < result["params_before"]
    assert "bn" not in out.with_suffix(".arch").read_text().split("\n", 1)[1]


def test_resnet_110_has_its_52_identity_blocks_removable_inside_repeat():
    from archlang.parser import read_source

    network = archlang.compile_spec(read_source("archlang/specs/resnet/resnet-110.arch").text).network
    blocks = removable_blocks(network)
    # 18 + 17 + 17 units inside the three repeats; the two zero-padding units change the shape
    assert [b.module_path for b in blocks] == [f"{stage}.{i}" for stage, n in ((3, 18), (5, 17), (7, 17))
                                               for i in range(n)]


GATED_IN_REPEAT = """
let block = gated(residual(seq(linear(16), bn, relu, linear(16), bn)))
seq(input(1, 4, 4), flatten, linear(16), repeat(3, block), linear(3))
"""


def test_greedy_pruning_of_gated_blocks_inside_repeat_removes_the_closed_gate_first():
    run = _loaded(GATED_IN_REPEAT)
    with torch.no_grad():
        for path, k in (("2.0", 0.3), ("2.1", -0.2), ("2.2", 0.9)):
            run.model.get_submodule(path).gate.k.fill_(k)
    loader = _Batches((1, 4, 4), 3)
    curve = prune(run, loader, "greedy")
    assert curve.order == ["2.1", "2.0", "2.2"]
    block = archlang.compile_spec(GATED_IN_REPEAT).total_params - archlang.compile_spec(
        GATED_IN_REPEAT.replace("repeat(3,", "repeat(2,")).total_params
    assert [curve.params[0] - p for p in curve.params] == [0, block, 2 * block, 3 * block]
    # g(k) = 0 already switched block 2.1 off: removing it changes nothing
    assert curve.accuracy[1] == curve.accuracy[0] == 100.0 - error_percent(run.model, loader)


def test_random_pruning_orders_differ_per_seed_and_are_recorded():
    run = _loaded(GATED_IN_REPEAT)
    curve = prune(run, _Batches((1, 4, 4), 3), "random", steps=[0, 1], seeds=3)
    assert curve.seeds == [0, 1, 2]
    assert sorted(order[0] for order in curve.orders) == ["2.0", "2.1", "2.2"]  # three different first blocks
    assert all(sorted(order) == ["2.0", "2.1", "2.2"] for order in curve.orders)
    assert prune(run, _Batches((1, 4, 4), 3), "random", steps=[1], seeds=3).orders == curve.orders  # seeded


def test_lesioning_finds_highway_layers_inside_repeat_of_a_let_definition():
    spec = "let hw = highway(linear(12))\nseq(input(1, 4, 4), flatten, linear(12), repeat(3, hw), linear(3))"
    run = _loaded(spec)
    loader = _Batches((1, 4, 4), 3)
    baseline, lesions = lesion(run, loader)
    assert baseline == error_percent(run.model, loader)
    assert [(x.layer, x.module_path) for x in lesions] == [(1, "2.0"), (2, "2.1"), (3, "2.2")]
    for x in lesions:
        model = _loaded(spec).model
        layer = model.get_submodule(x.module_path)
        with torch.no_grad():
            layer.t.weight.zero_()
            layer.t.bias.fill_(-1e4)
        assert x.error == pytest.approx(error_percent(model, loader))


def test_gates_command_reports_gates_and_dirac_layers_inside_repeat(capsys):
    spec = ("let g = gated(residual(seq(dirac(conv(4)), bn, relu)), k_init=0.5)\n"
            "seq(input(3, 8, 8), conv(4), repeat(2, seq(repeat(2, g))), global_avgpool, linear(2))")
    assert main(["gates", spec, "--no-data", "--json", "--out", "/tmp/archlang-gates-test"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["kind"], r["path"]) for r in rows if r["kind"] == "gate"] == [
        ("gate", f"1.{i}.0.{j}.gate") for i in range(2) for j in range(2)]
    assert sum(r["kind"] == "dirac" for r in rows) == 4 and all(
        r["values"]["k"] == 0.5 for r in rows if r["kind"] == "gate")


def test_every_site_path_is_its_module_in_the_built_network():
    from archlang.analysis.sites import sites

    spec = ("let unit = residual(seq(conv(8), bn), pre=seq(bn, relu), shortcut=seq(conv(8, kernel=1), bn), post=relu)\n"
            "seq(input(3, 8, 8), conv(8), repeat(2, unit), gated(residual(seq(dirac(conv(8)), bn))), "
            "gated(seq(conv(8), relu)), highway(conv(8)), concat(seq(conv(4), bn), conv(4, kernel=1)), "
            "add(conv(8), seq(conv(8), bn)), global_avgpool, flatten, linear(3))")
    compiled = archlang.compile_spec(spec)
    model = compiled.build()
    leaves = {"conv": torch.nn.Conv2d, "batchnorm": torch.nn.BatchNorm2d, "relu": torch.nn.ReLU,
              "dirac": DiracConv2d, "highway": Highway, "linear": torch.nn.Linear}
    found = list(sites(compiled.network))
    assert len(found) == 2 + 2 * 11 + 4 + 4 + 1 + 5 + 5 + 3  # every node: per unit residual, 3 seqs, 7 layers
    for site in found:
        module = model.get_submodule(site.path)
        if site.kind in leaves:
            assert isinstance(module, leaves[site.kind]), site
    outputs = {}

    def record(path: str):
        def hook(module, args, out) -> None:
            outputs[path] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
        return hook

    for site in found:
        model.get_submodule(site.path).register_forward_hook(record(site.path))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 8, 8))
    assert {s.path: (s.in_shape, s.out_shape) for s in found} == outputs


# ---- ... and inside parameterised user definitions (let f(x) = ...) ---------------------------------

PARAMETERISED = """
let unit(w, k=1.0) = gated(residual(seq(conv(w), bn, relu, dirac(conv(w)), bn), post=relu), k_init=k)
let hw(w) = highway(linear(w))
let stage(w, n) = repeat(n, unit(w))
seq(input(3, 8, 8), conv(4), stage(4, 2), unit(4, k=0.5), conv(8), stage(8, 2), global_avgpool, flatten,
    linear(6), hw(6), repeat(2, hw(6)), linear(3))
"""


def test_every_analysis_reaches_layers_inside_parameterised_definitions(capsys):
    from archlang.ir.text import to_spec

    compiled, model = _calibrated(PARAMETERISED, batches=1, batch=8)
    network, plain = folded(model, compiled.network)
    assert "bn" not in to_spec(network) and "dirac" not in to_spec(network)
    x = torch.randn(4, *compiled.input_shape)
    with torch.no_grad():
        assert float((model(x) - plain(x)).abs().max()) < 1e-5
    blocks = removable_blocks(compiled.network)
    assert [(b.module_path, b.kind) for b in blocks] == [
        ("1.0", "gated"), ("1.1", "gated"), ("2", "gated"), ("4.0", "gated"), ("4.1", "gated"),
        ("8", "highway"), ("9.0", "highway"), ("9.1", "highway")]
    run = _loaded(PARAMETERISED)
    loader = _Batches((3, 8, 8), 3)
    assert prune(run, loader, "greedy").order[0] == "2"  # k_init=0.5: the smallest gate
    assert [x.module_path for x in lesion(run, loader)[1]] == ["8", "9.0", "9.1"]
    from archlang.analysis.gates import gate_rows

    rows = gate_rows(run.model)
    assert [r.path for r in rows if r.kind == "gate"] == ["1.0.gate", "1.1.gate", "2.gate", "4.0.gate", "4.1.gate"]
    assert [r.path for r in rows if r.kind == "highway"] == ["8", "9.0", "9.1"]


BRANCHED = """
let unit(w) = residual(seq(conv(w), bn, relu, conv(w), bn), post=relu)
seq(input(3, 8, 8), conv(8), concat(seq(conv(4), bn, relu), repeat(2, unit(8))), add(seq(conv(12), bn), unit(12)),
    global_avgpool, linear(3))
"""


def test_fold_and_prune_reach_into_concat_and_add_branches():
    from archlang.ir.text import to_spec

    compiled, model = _calibrated(BRANCHED, batches=1, batch=8)
    network, plain = folded(model, compiled.network)
    assert "bn" not in to_spec(network)
    x = torch.randn(4, *compiled.input_shape)
    with torch.no_grad():
        assert float((model(x) - plain(x)).abs().max()) < 1e-5
    assert [b.module_path for b in removable_blocks(compiled.network)] == ["1.1.0", "1.1.1", "2.1"]
    run = _loaded(BRANCHED)
    curve = prune(run, _Batches((3, 8, 8), 3), "random", steps=[0, 3], seeds=2)
    assert curve.params[0] - curve.params[1] == 2 * (2 * (8 * 8 * 9) + 4 * 8) + 2 * (12 * 12 * 9) + 4 * 12
