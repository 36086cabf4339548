"""Recipes: shipped YAMLs validate, layers merge in order, and bad fields point at their source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import archlang
from archlang.errors import ArchlangError
from archlang.train.recipes import Recipe, build_recipe, default_recipe_name, recipe_names

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_recipe_validates_and_cites_its_source() -> None:
    names = recipe_names()
    for required in ("wrn-cifar", "wrn-svhn", "gated-mnist", "gated-cifar", "gated-cifar-resnet", "gated-cifar-wrn",
                     "gated-cifar-v1", "dirac-cifar", "highway-mnist", "highway-cifar"):
        assert required in names
    for name in names:
        resolved = build_recipe(name)
        assert isinstance(resolved.recipe, Recipe)
        assert resolved.given_text.lstrip().startswith("#"), f"{name} must cite its paper section"


def test_paper_schedules() -> None:
    wrn = build_recipe("wrn-cifar").recipe
    # train.lua lowers the lr before 1-based epochs 60, 120, 160: 0-based indices 59, 119, 159.
    assert [round(wrn.lr * wrn.lr_factor(e), 6) for e in (0, 58, 59, 119, 159, 199)] == [0.1, 0.1, 0.02, 0.004, 0.0008, 0.0008]
    resnet = build_recipe("gated-cifar-resnet", overrides={"epochs": 100}).recipe
    assert resnet.milestone_epochs() == [50, 75]
    assert build_recipe("gated-mnist").recipe.optimizer == "nadam"
    assert build_recipe("dirac-cifar").recipe.dirac_decay is True
    assert build_recipe("gated-cifar").recipe.k_decay is False


def test_layers_merge_yaml_then_train_clause_then_flags() -> None:
    compiled = archlang.compile_spec("mlp(depth=2, width=16)\ntrain(epochs=7, lr=0.01)")
    r = build_recipe(None, family=compiled.family, family_args=compiled.family_args, input_shape=compiled.input_shape,
                     train_args=compiled.train_args, train_spans=compiled.train_spans, spec_source=compiled.source,
                     overrides={"lr": 0.005}).recipe
    assert (r.epochs, r.lr, r.batch_size) == (7, 0.005, 128)


def test_bad_train_clause_value_points_at_the_clause() -> None:
    compiled = archlang.compile_spec("mlp(depth=2, width=16)\ntrain(epochs=0)")
    with pytest.raises(ArchlangError) as info:
        build_recipe(None, family="mlp", train_args=compiled.train_args, train_spans=compiled.train_spans,
                     spec_source=compiled.source, input_shape=compiled.input_shape)
    text = info.value.render()
    assert text.startswith("<inline>:2:7: error: recipe field 'epochs' = 0")
    assert "^" in text


def test_unknown_yaml_field_names_line_and_suggests(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("dataset: mnist\noptimizer: sgd\nlr: 0.1\nepochs: 2\nweight_decy: 0.1\n")
    with pytest.raises(ArchlangError) as info:
        build_recipe(str(path))
    text = info.value.render()
    assert f"{path}:5:1: error: unknown recipe field 'weight_decy'" in text
    assert "did you mean 'weight_decay'?" in text


def test_bad_flag_and_unknown_recipe_name() -> None:
    with pytest.raises(ArchlangError, match=r"--batch-size: recipe field 'batch_size' = 0"):
        build_recipe("wrn-cifar", overrides={"batch_size": 0})
    with pytest.raises(ArchlangError) as info:
        build_recipe("gated-mnst")
    assert "did you mean 'gated-mnist'?" in info.value.render()
    with pytest.raises(ArchlangError, match="mix fractions"):
        build_recipe("wrn-cifar", overrides={"milestones": [0.5, 100]})


def test_yaml_is_data_not_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("dataset: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ArchlangError, match="not valid YAML"):
        build_recipe(str(path))


def test_default_recipe_per_family() -> None:
    def family_of(spec: str) -> str:
        c = archlang.compile_spec(spec)
        return default_recipe_name(c.family, c.family_args, c.input_shape)

    assert family_of("mlp(depth=2, width=16)") == "gated-mnist"
    assert family_of("mlp(depth=2, width=16, block=highway, bn=false)") == "highway-mnist"
    assert family_of("wrn(depth=16, k=1)") == "wrn-cifar"
    assert family_of("diracnet(depth=10, k=1)") == "dirac-cifar"
    assert family_of("gated(preact_resnet(depth=32))") == "gated-cifar-resnet"
    # Gated WRNs (a gate around the family, or in its block) train with the Gated ResNet paper's recipe.
    assert family_of("gated(wrn(depth=16, k=1))") == "gated-cifar-wrn"
    assert family_of("wrn(depth=16, k=1, block=gated(B(3,3)))") == "gated-cifar-wrn"
    assert family_of("highway_cnn(variant=mnist, width=32)") == "highway-mnist-conv"
    assert family_of("highway_cnn(variant=cifar_b)") == "highway-cifar"
    assert family_of("seq(input(1,28,28), flatten, linear(10))") == "gated-mnist"


def test_family_variants_come_from_one_table() -> None:
    from archlang.train.recipe_spec import DEFAULT_RECIPES, default_recipe_name

    # Every recipe the table names is shipped, and every variant resolves through the table alone.
    assert set(DEFAULT_RECIPES.values()) <= set(recipe_names())
    assert default_recipe_name("wrn", {"dataset": "svhn"}, (3, 32, 32)) == "wrn-svhn"
    assert default_recipe_name("wrn", {"dataset": "svhn", "gated": True}, (3, 32, 32)) == "wrn-svhn"
    with pytest.raises(ArchlangError, match="no default recipe for a hand-written network"):
        default_recipe_name(None, {}, (3, 32, 32))


def test_train_clause_names_the_recipe_and_the_flag_wins() -> None:
    c = archlang.compile_spec('wrn(depth=10, k=1)\ntrain(recipe="gated-cifar-wrn", epochs=3)')
    common = {"family": c.family, "family_args": c.family_args, "input_shape": c.input_shape,
              "train_args": c.train_args, "train_spans": c.train_spans, "spec_source": c.source, "network": c.spec}
    chosen = build_recipe(None, **common)
    assert chosen.name == "gated-cifar-wrn" and chosen.recipe.epochs == 3 and chosen.recipe.milestones == (0.3, 0.6, 0.8)
    assert "recipe" not in chosen.resolved_dict()
    assert build_recipe("wrn-cifar", **common).name == "wrn-cifar"


def test_bn_momentum_of_the_recipe_may_agree_with_the_spec() -> None:
    c = archlang.compile_spec("seq(input(3,32,32), conv(8), bn(momentum=0.1), relu, global_avgpool, linear(10))")
    resolved = build_recipe("gated-cifar-wrn", network=c.spec, spec_source=c.source)
    assert resolved.recipe.bn_momentum == 0.1
    # A family's own batchnorms have no written momentum: the recipe sets them.
    w = archlang.compile_spec("wrn(depth=10, k=1)")
    assert build_recipe("gated-cifar-wrn", network=w.spec, spec_source=w.source).recipe.bn_momentum == 0.1


def test_train_command_module_does_not_import_torch() -> None:
    code = "import sys, archlang.train.command; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0
