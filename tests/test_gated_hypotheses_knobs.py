"""The knobs of issue 12's Gated ResNet MNIST hypotheses: mlp's first layer, Keras' BN epsilon,
Keras' initialisation, the gates' k initialisation; defaults leave committed runs as they were."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from test_recipe_init_groups import _layers, _model
from torch import nn

import archlang
from archlang.grouped import GroupedModel
from archlang.grouped import layers as G
from archlang.train import model_tools
from archlang.train.recipes import build_recipe

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted((ROOT / "reproduce" / "runs").glob("*/*/run.json"))
GATED = "mlp(depth=4, width=50, block=gated(residual))"


def _built(spec: str, seed: int = 0, **overrides: object) -> nn.Module:
    """The spec built and initialised as a gated-mnist run of `seed` with these recipe overrides."""
    return _model(build_recipe("gated-mnist", overrides=overrides).recipe, spec, seed)


@pytest.mark.parametrize("run", RUNS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_committed_runs_keep_their_spec_hash_and_parameter_count(run: Path) -> None:
    info = json.loads(run.read_text())
    compiled = archlang.compile_spec((run.parent / "spec.arch").read_text(), "spec.arch")
    assert hashlib.sha256(compiled.canonical.encode()).hexdigest() == info["spec_hash"]
    assert archlang.count_params(compiled.canonical) == info["params"]


def test_first_linear_is_the_dot_alone() -> None:
    layer = archlang.compile_spec(GATED, "t.arch").network.items
    linear = archlang.compile_spec("mlp(depth=4, width=50, block=gated(residual), first=linear)", "t.arch").network.items
    assert [n.kind for n in layer[:5]] == ["input", "flatten", "linear", "batchnorm", "relu"]
    assert [n.kind for n in linear[:4]] == ["input", "flatten", "linear", "gated"]
    assert [n.model_dump() for n in layer[5:]] == [n.model_dump() for n in linear[3:]]  # blocks, classifier
    # the first layer's BN (scale and shift of 50 units) is all that goes
    assert archlang.count_params("mlp(depth=4, width=50, block=residual, first=linear)") == \
        archlang.count_params("mlp(depth=4, width=50, block=residual)") - 2 * 50


def test_first_linear_passes_negative_values_to_the_blocks() -> None:
    model = _built("mlp(depth=2, width=50, block=residual, first=linear)").eval()
    head = model[:2]  # Flatten, Linear: with first=layer a ReLU would follow
    out = head(torch.rand(64, 1, 28, 28))
    assert isinstance(model[2], archlang.layers.residual.Residual) and bool((out < 0).any())


def test_first_refuses_other_values() -> None:
    with pytest.raises(archlang.ArchlangError) as err:
        archlang.compile_spec("mlp(depth=2, first=relu)", "t.arch")
    assert err.value.message == "first must be one of layer, linear; got relu(...)"


def test_gated_mnist_init_is_keras_glorot_uniform_with_zero_bias_and_unit_bn() -> None:
    model = _built("mlp(depth=2, width=50, block=gated(residual))")
    linears = _layers(model, nn.Linear)
    assert [tuple(m.weight.shape) for m in linears] == [(50, 784), (50, 50), (50, 50), (10, 50)]
    for m in linears:
        fan_out, fan_in = m.weight.shape  # Keras' Dense kernel is (in, out): get_fans gives (in, out) too
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        top = float(m.weight.detach().abs().max())
        assert 0.9 * bound < top <= bound and not m.bias.any()
    for bn in _layers(model, nn.BatchNorm1d):
        assert bool((bn.weight == 1).all()) and not bn.bias.any() and bn.eps == 1e-5
        assert not bn.running_mean.any() and bool((bn.running_var == 1).all())


def test_he_normal_is_kaiming_normal_fan_in_and_bn_eps_sets_keras_epsilon() -> None:
    model = _built("mlp(depth=2, width=50, block=residual)", linear_init="kaiming_normal", bn_eps=1e-3)
    first = _layers(model, nn.Linear)[0]
    assert abs(float(first.weight.detach().std()) - math.sqrt(2.0 / 784)) < 0.05 * math.sqrt(2.0 / 784)
    assert not first.bias.any() and all(bn.eps == 1e-3 for bn in _layers(model, nn.BatchNorm1d))


def test_gate_init_glorot_draws_each_k_in_plus_minus_sqrt3_and_spec_keeps_k_init() -> None:
    drawn = [float(k) for k in model_tools.gate_values(_built(GATED, gate_init="glorot_uniform")).values()]
    assert len(drawn) == 2 and len(set(drawn)) == 2 and all(abs(k) < math.sqrt(3.0) for k in drawn)
    again = [float(k) for k in model_tools.gate_values(_built(GATED, gate_init="glorot_uniform")).values()]
    assert again == drawn  # seeded like every other init
    wide = archlang.compile_spec("mlp(depth=100, width=2, block=gated(residual))", "t.arch")
    recipe = build_recipe("gated-mnist", overrides={"gate_init": "glorot_uniform"}).recipe
    torch.manual_seed(0)
    model = wide.build()
    model_tools.apply_init(model, recipe)
    many = list(model_tools.gate_values(model).values())
    assert max(many) > 1.4 and min(many) < -1.4  # the whole of (-sqrt(3), sqrt(3)), not (0, 1)
    spec = model_tools.gate_values(_built(GATED.replace("residual", "residual, k_init=2")))
    assert set(spec.values()) == {2.0}


def test_gate_init_and_bn_eps_at_their_defaults_leave_the_recipe_hash() -> None:
    plain = build_recipe("gated-mnist")
    assert build_recipe("gated-mnist", overrides={"gate_init": "spec"}).digest() == plain.digest()
    changed = build_recipe("gated-mnist", overrides={"gate_init": "glorot_uniform"})
    assert changed.resolved_dict()["gate_init"] == "glorot_uniform" and changed.digest() != plain.digest()


def test_grouped_copies_take_the_recipes_eps_and_drawn_k() -> None:
    recipe = build_recipe("gated-mnist", overrides={"gate_init": "glorot_uniform", "bn_eps": 1e-3}).recipe
    network = archlang.compile_spec(GATED, "t.arch").network
    grouped = GroupedModel.from_ir(network, [0, 1, 2], init=lambda m, _i: model_tools.apply_init(m, recipe))
    assert all(m.eps == 1e-3 for m in grouped.modules() if isinstance(m, G.GBatchNorm))
    ks = torch.stack([m.k.detach() for m in grouped.modules() if isinstance(m, G.GGate)])  # (blocks, copies)
    for copy, seed in enumerate((0, 1, 2)):
        single = list(model_tools.gate_values(_built(GATED, seed, gate_init="glorot_uniform")).values())
        assert ks[:, copy].tolist() == pytest.approx(single, abs=0)
