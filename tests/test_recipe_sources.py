"""Shipped recipes say where every value comes from, and keep the authors' values (docs/recipes.md)."""

from __future__ import annotations

import re

import pytest

from archlang.train.recipes import RECIPE_DIR, build_recipe, recipe_names

_KEY = re.compile(r"^([a-z_]+):")


def _unsourced_fields(text: str) -> list[str]:
    """Top-level fields with neither a trailing comment nor a comment line right above them."""
    lines = text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        key = _KEY.match(line)
        if key is None:
            continue
        trailing = " #" in line
        above = i > 0 and lines[i - 1].lstrip().startswith("#")
        if not (trailing or above):
            missing.append(key.group(1))
    return missing


def _bare_assumptions(text: str) -> list[str]:
    """Comments that start with `assumed` but give no reason after `assumed:`."""
    comments = [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]
    return [c for c in comments if c.startswith("assumed") and not re.match(r"assumed: \S", c)]


@pytest.mark.parametrize("name", recipe_names())
def test_every_field_cites_a_source_or_says_assumed(name: str) -> None:
    text = (RECIPE_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    assert _unsourced_fields(text) == []
    assert _bare_assumptions(text) == []


def test_the_source_check_can_fail() -> None:
    assert _unsourced_fields("# header\ndataset: cifar\nlr: 0.1\nepochs: 2  # paper\n") == ["lr"]
    assert _bare_assumptions("seed: 0  # assumed\nlr: 1  # assumed: searched\n") == ["assumed"]


def test_authors_code_values() -> None:
    dirac = build_recipe("dirac-cifar").recipe
    # diracnets train.py: torch.optim.SGD(params, lr, 0.9, weight_decay=...) is plain momentum, and
    # on_start_epoch lowers the lr when 1-based epoch 60 starts (0-based index 59).
    assert (dirac.nesterov, dirac.momentum) == (False, 0.9)
    assert [round(dirac.lr * dirac.lr_factor(e), 6) for e in (58, 59, 118, 119, 159)] == [0.1, 0.02, 0.02, 0.004, 0.0008]
    assert build_recipe("dirac-imagenet").recipe.milestone_epochs() == [29, 59, 89]
    assert build_recipe("wrn-svhn").recipe.milestone_epochs() == [79, 119]
    # He et al.'s fb.resnet.torch RandomCrop(32, 4) zero-pads; WRN's train_cifar.sh reflects.
    assert build_recipe("gated-cifar-resnet").recipe.pad_mode == "zeros"
    assert build_recipe("gated-cifar-wrn").recipe.pad_mode == "reflect"
    # WRN models/utils.lua MSRinit and resnet-pre-act.lua ConvInit: std sqrt(2 / (k*k*out)).
    for name in ("wrn-cifar", "wrn-svhn", "gated-cifar-wrn", "gated-cifar-resnet"):
        assert build_recipe(name).recipe.conv_init == "kaiming_normal_fan_out", name


def test_caffe_mnist_scale_is_exactly_one_over_256() -> None:
    """The MNIST highway prototxt scales pixels by 0.00390625; the recipe says so with mean 0 and std 256/255."""
    r = build_recipe("highway-mnist-conv").recipe
    assert r.normalize == "meanstd" and r.mean == (0.0,)
    assert r.std is not None
    assert 1.0 / (255.0 * r.std[0]) == pytest.approx(0.00390625, rel=1e-15)
