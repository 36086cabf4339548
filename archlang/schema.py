"""The JSON forms of archlang: the JSON Schema of the IR and of the recipe, and IR JSON read back.

The schemas come from the Pydantic models themselves (model_json_schema), so an editor that
validates a file against them checks exactly what the compiler checks. IR JSON (what
`archlang compile --json` prints, or one IR node) is validated with the same models.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from archlang.errors import ArchlangError, Source, shorten
from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.nodes import AnyNode

SCHEMAS = ("ir", "recipe")
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@functools.cache
def _ir_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(AnyNode)


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema called `name`: 'ir' (any IR node, families included) or 'recipe'."""
    if name == "ir":
        body = _ir_adapter().json_schema()
        title = "archlang IR node (the \"ir\" of `archlang compile --json`)"
    elif name == "recipe":
        from archlang.train.recipes import Recipe

        body = Recipe.model_json_schema()
        title = "archlang training recipe (a recipe YAML file, train(...) fields, --set flags)"
    else:
        raise ArchlangError(f"no schema called '{shorten(name)}'", hint=f"one of: {', '.join(SCHEMAS)}")
    return {"$schema": _DIALECT, "title": title, **{k: v for k, v in body.items() if k != "title"}}


def looks_like_ir_json(text: str) -> bool:
    """Spec text never starts with '{' and parses as a JSON object; a sweep `{a, b}` is not JSON."""
    if not text.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"invalid IR at {shorten(where, 60)}: {first['msg']}{more}"


def read_ir_json(source: Source) -> IRNode:
    """The IR node of an IR JSON file: the "ir" of `compile --json` output, or a bare node with a "kind"."""
    data = json.loads(source.text)
    node = data.get("ir", data)
    if not isinstance(node, dict) or "kind" not in node:
        raise ArchlangError("this JSON is not archlang IR: expected the output of `archlang compile --json` "
                            "(an object with \"ir\") or an IR node (an object with \"kind\")", path=source.filename,
                            hint="`archlang schema ir` prints the JSON Schema of IR nodes")
    try:
        return _ir_adapter().validate_json(json.dumps(node))
    except FieldProblem as problem:
        raise ArchlangError(f"invalid IR: {problem.message}", path=source.filename, hint=problem.hint) from None
    except ValidationError as err:
        raise ArchlangError(_problem(err), path=source.filename,
                            hint="`archlang schema ir` prints the JSON Schema of IR nodes") from None


# What each recipe field means, for the generated reference (docs/recipe-fields.md). A description
# given in the Recipe model itself (Field(description=...)) takes precedence; a field with neither
# fails tests/test_docs.py, so a new field cannot go undocumented.
FIELD_NOTES = {
    "dataset": "What to train on. `cifar` is `cifar10` or `cifar100` from the spec's number of classes; "
               "`imagefolder` reads `--data-dir` as `train/<class>/*` and `test/<class>/*` images (or a zip of "
               "them); `imagenet` streams ILSVRC2012 image by image (docs/training.md).",
    "train_split": "`train+extra` adds SVHN's 531,131 extra images to its training split.",
    "normalize": "`scale`: pixels to [0, 1]; `mean`: minus the per-channel mean; `meanstd`: also divided by "
                 "the per-channel standard deviation; `pixel_mean`: minus the training split's per-pixel mean "
                 "image; `gcn`: global contrast normalisation of each image (pylearn2, scaled to `gcn_scale`), "
                 "then minus the per-pixel mean of the normalised training split; `gcn_zca`: GCN then ZCA "
                 "whitening fitted on the training split.",
    "gcn_scale": "GCN: each image, minus its mean, is scaled to this L2 norm (pylearn2's CIFAR-10 script: 55).",
    "zca_bias": "ZCA: added to the covariance's eigenvalues (pylearn2's `filter_bias`).",
    "crop_pad": "Random crops of the image padded by this many pixels on each side (0: no cropping).",
    "pad_mode": "How the padding for crops is filled.",
    "flip": "Random horizontal flips.",
    "mean": "Per-channel means in [0, 1] units; default: computed from the training split. Give with `std`.",
    "std": "Per-channel standard deviations in [0, 1] units; default: computed from the training split.",
    "crop_size": "ImageNet: the side of the RandomResizedCrop training crops and of the evaluation centre crop.",
    "resize": "ImageNet evaluation: the shorter side before the centre crop (default crop_size * 256/224).",
    "crop_scale": "ImageNet: (low, high), the range of crop areas as a fraction of the image.",
    "optimizer": "`sgd`, `adam` or `nadam` (torch.optim).",
    "lr": "The base learning rate, before the schedule.",
    "momentum": "SGD momentum.",
    "nesterov": "Nesterov momentum (SGD; needs momentum > 0 and dampening 0).",
    "dampening": "SGD dampening.",
    "betas": "Adam/NAdam coefficients of the running averages.",
    "eps": "Adam/NAdam epsilon.",
    "fused": "Use torch's fused (or foreach) optimizer kernels; default: when torch has them for the device.",
    "schedule": "`constant`; `multistep`: multiply by `gamma` at each milestone; `exponential`: by `gamma` "
                "every epoch.",
    "milestones": "Epochs at which `multistep` multiplies the rate by `gamma`, or fractions of `epochs` "
                  "(all below 1, e.g. [0.5, 0.75]).",
    "gamma": "The factor of `multistep` and `exponential` schedules.",
    "weight_decay": "L2 weight decay, on the parameters the four fields below select.",
    "k_decay": "Decay the gate parameters k of gated networks too (the Gated ResNet papers do not).",
    "dirac_decay": "Decay the a and b of Dirac layers.",
    "bias_decay": "Decay biases.",
    "bn_decay": "Decay batchnorm weights and biases.",
    "batch_size": "Training images per step (over all processes under torchrun).",
    "eval_batch_size": "Images per evaluation batch.",
    "epochs": "Passes over the training split.",
    "seed": "Seeds initialisation, data order and augmentation: the same seed gives the same run.",
    "conv_init": "Initialisation of convolution weights: torch's `default`, `kaiming_normal` (fan in), "
                 "`kaiming_normal_fan_out`, `xavier_uniform`, `caffe_xavier` (uniform, fan in), or `torch7` "
                 "(U(±1/√fan_in)); every kind but `default` zeroes the bias.",
    "linear_init": "Initialisation of linear weights, as `conv_init`.",
    "classifier_init": "Initialisation of the classifier (the last linear layer), as `linear_init`, or `normal` "
                       "(with `classifier_std`); bias 0 (`default`: torch's own). Default: `linear_init`.",
    "classifier_std": "Standard deviation of `classifier_init: normal`.",
    "stem_init": "Initialisation of the first convolution, as `classifier_init`. Default: `conv_init`.",
    "stem_std": "Standard deviation of `stem_init: normal`.",
    "bn_weight_init": "Batchnorm weights: `ones`, or `uniform` U(0, 1) (torch7's reset); biases 0.",
    "gate_init": "The gates' k of gated networks: `spec` keeps the spec's `k_init` (1 by default); "
                 "`glorot_uniform` draws each k from U(-√3, √3), Keras' default kernel init applied to a "
                 "scalar weight (its fan in and out are 1).",
    "bn_eps": "Batchnorm epsilon of every batchnorm layer (Keras: 1e-3); default: the layer's own.",
    "bias_lr_mult": "SGD: the lr of every bias is lr times this (Caffe's `lr_mult`).",
    "classifier_lr_mult": "SGD: the lr of the classifier's weight is lr times this.",
    "classifier_decay_mult": "SGD: the weight decay of the classifier's weight is weight_decay times this "
                             "(Caffe's `decay_mult`).",
    "momentum_reset": "SGD with a multistep schedule: drop the momentum buffers at each milestone, as "
                      "rebuilding the optimizer there does.",
    "bn_momentum": "Batchnorm momentum in PyTorch's convention (the weight of the new batch statistic: "
                   "Keras' 0.9 is PyTorch's 0.1); default: torch's 0.1.",
}


def _type_text(prop: dict[str, Any]) -> str:
    """A JSON Schema property in a few words: `one of a, b`, `integer, 1 to 100000`, `list of number`."""
    options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    words = [_one_type(p) for p in options]
    optional = " or null" if len(options) < len(prop.get("anyOf", [prop])) else ""
    return " or ".join(words) + optional


def _one_type(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        fixed = prop.get("prefixItems")
        if fixed:
            return f"{len(fixed)} {fixed[0].get('type', 'value')}s"
        return f"list of {prop.get('items', {}).get('type', 'value')}"
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if low is None and high is None:
        return kind
    left = "[" if "minimum" in prop else "("
    right = "]" if "maximum" in prop else ")"
    return f"{kind} in {left}{_num(low)}, {_num(high)}{right}"


def _num(value: Any) -> str:
    return "…" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:g}"


def recipe_markdown() -> str:
    """docs/recipe-fields.md: every field of the recipe, generated from the Recipe model."""
    from archlang.train.recipes import Recipe

    body = Recipe.model_json_schema()
    required = set(body.get("required", []))
    lines = ["# Recipe fields", "",
             ("<!-- Generated by `archlang schema recipe --markdown > docs/recipe-fields.md`; "
             "tests/test_docs.py checks it is current. -->"), "",
             ("Every field of a training recipe: a recipe YAML file (`archlang/recipes/*.yaml`, or your own "
             "with `--recipe FILE`), the spec's `train(...)` clause, `--set FIELD=VALUE`, and the flags "
             "`--epochs --seed --lr --batch-size --weight-decay --k-decay` all set these; later ones win "
             "(YAML < train(...) < flags). How they combine: docs/training.md."), "",
             "| field | value | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Recipe.model_fields.items():
        prop = body["properties"][name]
        default = "required" if name in required else f"`{json.dumps(prop.get('default'))}`"
        note = field.description or FIELD_NOTES.get(name, "")
        lines.append(f"| `{name}` | {_type_text(prop)} | {default} | {note} |")
    return "\n".join(lines) + "\n"
