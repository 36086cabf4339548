"""The recipe features of docs/recipes.md Part 3: highway_cnn's dropout and heads, new recipe fields
that leave old runs' hashes alone, and their validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import archlang
from archlang.errors import ArchlangError
from archlang.ir.families.highway_cnn import HighwayCnn
from archlang.train.recipes import LATER_FIELDS, Recipe, ResolvedRecipe, build_recipe, recipe_names

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted((ROOT / "reproduce" / "runs").rglob("run.json"))  # grouped sweeps nest a level deeper


def _kinds(**args: object) -> list[tuple[str, float | None]]:
    """The pooling, dropout and head nodes of the expanded family, in order."""
    seq = HighwayCnn(**args).expand()
    shown = ("dropout", "maxpool", "flatten", "linear", "global_avgpool")
    return [(node.kind, getattr(node, "p", None)) for node in seq.items if node.kind in shown]


def test_highway_mnist_dropout_follows_the_prototxt() -> None:
    assert _kinds(variant="mnist", dropout=True) == [
        ("dropout", 0.2), ("maxpool", None), ("dropout", 0.3), ("maxpool", None), ("dropout", 0.4),
        ("maxpool", None), ("dropout", 0.5), ("flatten", None), ("linear", None)]
    assert [k for k, _ in _kinds(variant="mnist")] == ["maxpool", "maxpool", "maxpool", "flatten", "linear"]


def test_highway_b_dropout_and_heads() -> None:
    assert _kinds(variant="cifar_b", dropout=True) == [
        ("dropout", 0.2), ("maxpool", None), ("dropout", 0.2), ("maxpool", None), ("dropout", 0.2),
        ("global_avgpool", None), ("dropout", 0.2), ("linear", None)]
    assert _kinds(variant="cifar_b", head="fc")[-2:] == [("flatten", None), ("linear", None)]


def test_dropout_leaves_counts_and_the_fc_head_has_its_own() -> None:
    assert archlang.count_params("highway_cnn(variant=cifar_b, dropout=true)") == 2_256_838
    assert archlang.count_params("highway_cnn(variant=cifar_b)") == 2_256_838
    # Linear(8 * 8 * 128 -> 10) in place of the 1x1 conv and Linear(100 -> 10)
    assert archlang.count_params("highway_cnn(variant=cifar_b, head=fc)") == 2_256_838 - (128 * 100 + 100) - (
        100 * 10 + 10) + (8192 * 10 + 10) == 2_324_858
    assert archlang.count_params("highway_cnn(variant=mnist, width=16, dropout=true)") == 38_986


def test_head_is_for_highway_b_only() -> None:
    with pytest.raises(ArchlangError) as err:
        archlang.compile_spec("highway_cnn(variant=mnist, head=fc)", "t.arch")
    assert err.value.message == "head applies to variant cifar_b (Highway B's Table 2 and 3 heads)"


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.parent.name)
def test_committed_runs_keep_their_recipe_hash(run: Path) -> None:
    resolved = yaml.safe_load((run.parent / "recipe.resolved.yaml").read_text())
    digest = ResolvedRecipe(Recipe.model_validate(resolved), "x", "").digest()
    assert digest == json.loads(run.read_text())["recipe_hash"]


def test_later_fields_have_the_models_defaults_and_are_left_out_at_them() -> None:
    assert {name: Recipe.model_fields[name].default for name in LATER_FIELDS} == LATER_FIELDS
    plain = build_recipe("gated-mnist")
    assert not set(plain.resolved_dict()) & set(LATER_FIELDS)
    changed = build_recipe("highway-mnist-conv", overrides={"bias_lr_mult": 2.0, "momentum_reset": False})
    assert changed.resolved_dict()["bias_lr_mult"] == 2.0 and "momentum_reset" not in changed.resolved_dict()
    assert changed.digest() != build_recipe("highway-mnist-conv", overrides={"bias_lr_mult": 1.0}).digest()


@pytest.mark.parametrize(("recipe", "overrides", "message"), [
    ("gated-mnist", {"bias_lr_mult": 2.0}, "--set bias_lr_mult: bias_lr_mult (Caffe's multipliers) needs optimizer 'sgd'"),
    ("gated-mnist", {"momentum_reset": True},
     "--set momentum_reset: momentum_reset needs optimizer 'sgd' and schedule 'multistep' (it acts at the milestones)"),
    ("wrn-cifar", {"classifier_init": "normal"}, "--set classifier_init: classifier_init 'normal' needs classifier_std"),
    ("wrn-cifar", {"stem_std": 1.0}, "--set stem_std: stem_std applies to stem_init 'normal' only"),
    ("dirac-imagenet", {"normalize": "gcn"}, ("--set normalize: normalize 'gcn' needs the whole training split in "
                                             "memory; dataset imagenet is read image by image")),
])
def test_new_fields_are_checked(recipe: str, overrides: dict, message: str) -> None:
    with pytest.raises(ArchlangError) as err:
        build_recipe(recipe, overrides=overrides)
    assert err.value.message == message


def test_shipped_recipes_still_validate() -> None:
    for name in recipe_names():
        build_recipe(name)
