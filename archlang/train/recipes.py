"""Training recipes: validated data describing everything a run depends on.

A recipe is resolved from three layers, later ones winning field by field:
the YAML file (a shipped name such as `wrn-cifar`, or a user file), the spec's
`train(...)` clause, and command-line flags. The merged mapping is validated once;
an error is reported at the place the offending field came from (YAML line, train
clause span, or the flag), with a did-you-mean for unknown fields.

This module imports no torch: `archlang params` and recipe checks stay light.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from archlang.errors import ArchlangError, Source, Span, did_you_mean, shorten
from archlang.train import recipe_spec, recipe_yaml
from archlang.train.recipe_spec import default_recipe_name
from archlang.train.recipe_yaml import RECIPE_DIR, Layer, load_recipe_layer, recipe_names  # noqa: F401 (public here)

InitKind = Literal["default", "kaiming_normal", "kaiming_normal_fan_out", "xavier_uniform", "caffe_xavier", "torch7"]
# An override of one named layer's init may also be a plain gaussian (Caffe's gaussian filler, `*_std`).
LayerInit = Literal["default", "kaiming_normal", "kaiming_normal_fan_out", "xavier_uniform", "caffe_xavier", "torch7",
                    "normal"]
Multiplier = Annotated[float, Field(gt=0.0, le=100.0)]


# Normalisations with statistics of whole images (per pixel), fitted on the training split.
WHOLE_IMAGE_NORMALIZE = ("pixel_mean", "gcn", "gcn_zca")


class Recipe(BaseModel):
    """Every knob of a training run. Flat, so `train(lr=...)` and `--lr` name fields directly."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Data. "cifar" resolves to cifar10 or cifar100 from the spec's number of classes.
    dataset: Literal["mnist", "cifar", "cifar10", "cifar100", "svhn", "imagefolder", "imagenet"]
    train_split: Literal["train", "train+extra"] = "train"
    normalize: Literal["scale", "mean", "meanstd", "pixel_mean", "gcn", "gcn_zca"] = "scale"
    # Global contrast normalisation (pylearn2 `global_contrast_normalize`) and ZCA (pylearn2 `ZCA`).
    gcn_scale: float = Field(55.0, gt=0.0, le=1e4)
    zca_bias: float = Field(0.1, gt=0.0, le=1e4)
    crop_pad: int = Field(0, ge=0, le=16)
    pad_mode: Literal["reflect", "zeros"] = "reflect"
    flip: bool = False
    # Per-channel statistics in [0, 1] units; default: computed from the training split.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # ImageNet (read image by image): RandomResizedCrop to crop_size over crop_scale of the
    # area for training; for evaluation the shorter side resized to `resize`, centre crop.
    crop_size: int | None = Field(None, ge=8, le=2048)
    resize: int | None = Field(None, ge=8, le=4096)
    crop_scale: tuple[float, float] | None = None

    # Optimizer.
    optimizer: Literal["sgd", "nadam", "adam"]
    lr: float = Field(gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    dampening: float = Field(0.0, ge=0.0, le=1.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0, le=1.0)
    # None: use the fused (or foreach) kernels when torch has them for the device.
    fused: bool | None = None

    # Learning-rate schedule, applied per epoch.
    schedule: Literal["constant", "multistep", "exponential"] = "constant"
    milestones: tuple[float, ...] = ()
    gamma: float = Field(0.1, gt=0.0, le=1.0)

    # Weight decay and what it applies to.
    weight_decay: float = Field(0.0, ge=0.0, lt=1.0)
    k_decay: bool = False
    dirac_decay: bool = True
    bias_decay: bool = True
    bn_decay: bool = True

    batch_size: int = Field(128, ge=1, le=65536)
    eval_batch_size: int = Field(1000, ge=1, le=65536)
    epochs: int = Field(ge=1, le=100000)
    seed: int = Field(0, ge=0, le=2**63 - 1)

    conv_init: InitKind = "default"
    linear_init: InitKind = "default"
    # PyTorch convention (weight of the new batch statistic); Keras' 0.9 is PyTorch's 0.1.
    bn_momentum: float | None = Field(None, gt=0.0, lt=1.0)
    bn_eps: float | None = Field(None, ge=1e-8, le=1e-1)
    bn_weight_init: Literal["ones", "uniform"] = "ones"
    # The gates' k: the spec's k_init, or Keras' glorot_uniform on a scalar weight (fan_in = fan_out = 1).
    gate_init: Literal["spec", "glorot_uniform"] = "spec"
    # The classifier is the last nn.Linear, the stem the first convolution (in module order).
    classifier_init: LayerInit | None = None
    classifier_std: float | None = Field(None, gt=0.0, le=100.0)
    stem_init: LayerInit | None = None
    stem_std: float | None = Field(None, gt=0.0, le=100.0)

    # Caffe's per-parameter lr_mult / decay_mult (SGD only).
    bias_lr_mult: Multiplier = 1.0
    classifier_lr_mult: Multiplier = 1.0
    classifier_decay_mult: float = Field(1.0, ge=0.0, le=100.0)
    # Drop the momentum buffers at every lr milestone (the authors rebuilt their optimizer there).
    momentum_reset: bool = False

    @model_validator(mode="after")
    def _check_schedule(self) -> Recipe:
        if self.schedule == "multistep":
            if not self.milestones:
                raise ValueError("schedule 'multistep' needs milestones (epochs, or fractions of the epochs)")
            if any(m <= 0 for m in self.milestones):
                raise ValueError("milestones must be positive")
            fractions = [m < 1 for m in self.milestones]
            if any(fractions) and not all(fractions):
                raise ValueError("milestones mix fractions (< 1) and epoch numbers; use one kind")
            if list(self.milestones) != sorted(self.milestones):
                raise ValueError("milestones must be increasing")
        if not (0.0 <= self.betas[0] < 1.0 and 0.0 <= self.betas[1] < 1.0):
            raise ValueError("betas must be two numbers in [0, 1)")
        if self.nesterov and self.optimizer == "sgd" and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
        self._check_statistics()
        self._check_streamed_crops()
        self._check_layer_inits()
        self._check_sgd_only()
        return self

    def _check_layer_inits(self) -> None:
        for layer in ("classifier", "stem"):
            init, std = getattr(self, f"{layer}_init"), getattr(self, f"{layer}_std")
            if init == "normal" and std is None:
                raise ValueError(f"{layer}_init 'normal' needs {layer}_std")
            if init != "normal" and std is not None:
                raise ValueError(f"{layer}_std applies to {layer}_init 'normal' only")

    def _check_sgd_only(self) -> None:
        multipliers = {"bias_lr_mult": self.bias_lr_mult, "classifier_lr_mult": self.classifier_lr_mult,
                       "classifier_decay_mult": self.classifier_decay_mult}
        changed = [name for name, value in multipliers.items() if value != 1.0]
        if changed and self.optimizer != "sgd":
            raise ValueError(f"{changed[0]} (Caffe's multipliers) needs optimizer 'sgd'")
        if self.momentum_reset and (self.optimizer != "sgd" or self.schedule != "multistep"):
            raise ValueError("momentum_reset needs optimizer 'sgd' and schedule 'multistep' (it acts at the milestones)")

    def _check_statistics(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
                raise ValueError("mean and std need one value per channel (1 or 3), the same number of each")
            if any(s <= 0 for s in self.std):
                raise ValueError("std values must be positive")

    def _check_streamed_crops(self) -> None:
        if self.dataset != "imagenet":
            if any(v is not None for v in (self.crop_size, self.resize, self.crop_scale)):
                raise ValueError("crop_size, resize and crop_scale apply to dataset imagenet; "
                                 "the in-memory datasets use crop_pad and flip")
            return
        if self.crop_size is None:
            raise ValueError("dataset imagenet needs crop_size (the side of the crops the network sees, e.g. 224)")
        if self.normalize in WHOLE_IMAGE_NORMALIZE:
            raise ValueError(f"normalize '{self.normalize}' needs the whole training split in memory; "
                             "dataset imagenet is read image by image")
        if self.normalize != "scale" and self.mean is None:
            raise ValueError("dataset imagenet needs mean and std in the recipe (they are not computed from "
                             "1.28M images), or normalize: scale")
        if self.resize is not None and self.resize < self.crop_size:
            raise ValueError(f"resize ({self.resize}) must be at least crop_size ({self.crop_size})")
        if self.crop_scale is not None and not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError("crop_scale must be (low, high) with 0 < low <= high <= 1")

    def eval_resize(self) -> int:
        """ImageNet evaluation: the shorter side before the centre crop (256 for 224 crops)."""
        if self.resize is not None:
            return self.resize
        assert self.crop_size is not None  # _check_streamed_crops: dataset imagenet needs crop_size
        return round(self.crop_size * 256 / 224)

    def milestone_epochs(self) -> list[int]:
        """Milestones as 0-based epoch indices from which the next factor applies."""
        if all(m < 1 for m in self.milestones):
            return [round(m * self.epochs) for m in self.milestones]
        return [int(m) for m in self.milestones]

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of the base lr during 0-based `epoch`."""
        if self.schedule == "multistep":
            return self.gamma ** sum(1 for m in self.milestone_epochs() if epoch >= m)
        if self.schedule == "exponential":
            return self.gamma**epoch
        return 1.0


RECIPE_FIELDS = tuple(Recipe.model_fields)
# The datasets by their own names (a recipe's "cifar" is cifar10 or cifar100, from the spec's classes).
DATASETS = ("mnist", "cifar10", "cifar100", "svhn", "imagefolder", "imagenet")
# Recipe fields `archlang train` has a flag of their own for (the others are set with --set FIELD=VALUE).
OWN_FLAGS = ("epochs", "seed", "lr", "batch_size", "weight_decay", "k_decay")

# Fields added after runs already existed, with their defaults: left out of the resolved recipe while
# at the default, so the recipe hash of those runs, and their --resume, stay valid.
LATER_FIELDS: dict[str, Any] = {
    "mean": None, "std": None, "crop_size": None, "resize": None, "crop_scale": None,
    "gcn_scale": 55.0, "zca_bias": 0.1, "bn_eps": None, "bn_weight_init": "ones", "gate_init": "spec",
    "classifier_init": None, "classifier_std": None, "stem_init": None, "stem_std": None,
    "bias_lr_mult": 1.0, "classifier_lr_mult": 1.0, "classifier_decay_mult": 1.0, "momentum_reset": False,
}


@dataclass(frozen=True)
class ResolvedRecipe:
    recipe: Recipe
    name: str
    given_text: str  # the YAML as shipped/written, plus the overrides applied on top

    def resolved_dict(self) -> dict[str, Any]:
        values = json.loads(self.recipe.model_dump_json())
        return {k: v for k, v in values.items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.resolved_dict(), sort_keys=True).encode()).hexdigest()


def _field_of(error: Mapping[str, Any]) -> str | None:
    loc = error.get("loc") or ()
    return str(loc[0]) if loc else None


def _blame(layers: list[Layer], name: str | None) -> Layer | None:
    """The highest-priority layer that set a field (the one whose value was used)."""
    for layer in reversed(layers):
        if name is not None and name in layer.values:
            return layer
    return None


def _error_at(layer: Layer | None, name: str | None, message: str, hint: str | None) -> ArchlangError:
    if layer is None:
        return ArchlangError(message, hint=hint)
    if layer.kind == "flags":
        named = name or ""
        flag = "--" + named.replace("_", "-") if named in OWN_FLAGS else f"--set {shorten(named)}"
        return ArchlangError(f"{flag}: {message}", hint=hint)
    span = layer.spans.get(name or "")
    if layer.source is not None and span is not None:
        return ArchlangError(message, source=layer.source, span=span, hint=hint)
    return ArchlangError(message, path=layer.path, hint=hint)


def _validation_error(exc: ValidationError, layers: list[Layer]) -> ArchlangError:
    error = exc.errors()[0]
    name = _field_of(error)
    layer = _blame(layers, name)
    if error["type"] == "extra_forbidden":
        return _error_at(layer, name, f"unknown recipe field '{shorten(name or '')}'",
                         did_you_mean(name or "", RECIPE_FIELDS) or f"recipe fields: {', '.join(RECIPE_FIELDS)}")
    if error["type"] == "missing":
        return ArchlangError(f"recipe field '{name}' is required but no recipe layer sets it",
                             path=layers[0].path if layers else None)
    message = error["msg"].removeprefix("Value error, ")
    if name is not None and error["type"] != "value_error":
        value = layer.values.get(name) if layer else None
        message = f"recipe field '{name}' = {recipe_yaml.shown(value)}: {message}"
    if layer is None and error["type"] == "value_error":
        blamed = _cross_field_blame(message, layers)
        if blamed is not None:
            return _error_at(blamed[0], blamed[1], message, None)
    return _error_at(layer, name, message, None)


def _cross_field_blame(message: str, layers: list[Layer]) -> tuple[Layer, str] | None:
    """For a check across fields: the field the message names that the latest layer set.

    The latest layer is the likeliest culprit (an override on top of a consistent recipe).
    """
    mentioned = [f for f in RECIPE_FIELDS if re.search(rf"\b{f}\b", message, re.IGNORECASE)]
    for layer in reversed(layers):
        for name in mentioned:
            if name in layer.values:
                return layer, name
    return None


def resolve_recipe(layers: list[Layer], name: str) -> ResolvedRecipe:
    """Merge layers (later wins) and validate once."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer.values)
    try:
        recipe = Recipe.model_validate(merged)
    except ValidationError as exc:
        raise _validation_error(exc, layers) from None
    given = layers[0].source.text if layers and layers[0].source else ""
    for layer in layers[1:]:
        if layer.values:
            label = "train(...) clause" if layer.kind == "train" else "command line"
            given += f"\n# overrides from the {label}:\n" + yaml.safe_dump(dict(layer.values), sort_keys=False)
    return ResolvedRecipe(recipe, name, given)


def build_recipe(
    recipe: str | None,
    *,
    family: str | None = None,
    family_args: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] = (),
    train_args: Mapping[str, Any] | None = None,
    train_spans: Mapping[str, Span] | None = None,
    spec_source: Source | None = None,
    overrides: Mapping[str, Any] | None = None,
    network: Any = None,
) -> ResolvedRecipe:
    """Resolve YAML < train(...) clause < flag overrides into one validated recipe.

    The YAML is --recipe, else the clause's train(recipe=...), else the family's default.
    `network` (the spec's IR) lets a recipe bn_momentum that contradicts a bn(momentum=...) be refused.
    """
    clause = dict(train_args or {})
    spans = dict(train_spans or {})
    named, named_at = recipe_spec.clause_recipe(clause, spans, spec_source)
    clause.pop("recipe", None)
    try:
        name, base = load_recipe_layer(recipe or named or default_recipe_name(family, family_args or {}, input_shape))
    except ArchlangError as err:
        raise (err.with_location(spec_source, named_at) if recipe is None and named_at and spec_source else err) from None
    layers = [base]
    if clause:
        layers.append(Layer("train", clause, spec_source, spans, spec_source.filename if spec_source else None))
    if overrides:
        layers.append(Layer("flags", {k: v for k, v in overrides.items() if v is not None}))
    resolved = resolve_recipe(layers, name)
    _check_bn(resolved.recipe, layers, network, spec_source)
    return resolved


def _check_bn(recipe: Recipe, layers: list[Layer], network: Any, spec_source: Source | None) -> None:
    layer = _blame(layers, "bn_momentum")
    if layer is None:
        return
    span = layer.spans.get("bn_momentum")
    place = "--set bn_momentum" if layer.kind == "flags" else recipe_spec.where_set(layer.source, span, layer.path or "")
    recipe_spec.check_bn_momentum(recipe.bn_momentum, network, spec_source, place)
