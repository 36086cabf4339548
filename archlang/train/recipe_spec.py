"""How a spec chooses and constrains its recipe.

- DEFAULT_RECIPES: the recipe each family trains with when neither --recipe nor the spec's
  `train(recipe=...)` names one, keyed by (family kind, variant); a variant is a fact of the
  spec that its paper trains differently (gated, SVHN, ImageNet-sized inputs, MNIST-sized,
  highway blocks). One table, read top to bottom; no string ladder.
- the `train(recipe="...")` clause: the spec's own choice, below --recipe.
- bn momentum: a recipe's `bn_momentum` may not contradict an explicit `bn(momentum=...)`.

No torch here: `archlang params` and recipe checks stay light.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from archlang.errors import ArchlangError, Source, Span, shorten

# (family kind, variant) -> shipped recipe; variant "" is the family's plain default.
DEFAULT_RECIPES: dict[tuple[str | None, str], str] = {
    ("wrn", ""): "wrn-cifar",
    ("wrn", "gated"): "gated-cifar-wrn",  # Savarese et al., Wide Gated ResNets (Tables 3-5)
    ("wrn", "svhn"): "wrn-svhn",
    ("preact_resnet", ""): "gated-cifar-resnet",
    ("preact_resnet", "imagenet"): "dirac-imagenet",
    ("resnet", ""): "gated-cifar-resnet",
    ("resnet", "imagenet"): "dirac-imagenet",  # DiracNets Table 3's ResNet-18/34 baselines
    ("diracnet", ""): "dirac-cifar",
    ("diracnet", "imagenet"): "dirac-imagenet",
    ("mlp", ""): "gated-mnist",
    ("mlp", "highway"): "highway-mnist",
    ("highway_cnn", ""): "highway-cifar",
    ("highway_cnn", "mnist"): "highway-mnist-conv",
    (None, "mnist"): "gated-mnist",  # a hand-written network on MNIST-sized inputs
}
# When a spec has several variants, the first that its family's table has wins.
VARIANT_ORDER = ("svhn", "imagenet", "gated", "highway", "mnist")


def _mentions_gate(value: Any) -> bool:
    if isinstance(value, Mapping):
        return value.get("kind") == "gated" or value.get("gated") is True or any(map(_mentions_gate, value.values()))
    if isinstance(value, (list, tuple)):
        return any(map(_mentions_gate, value))
    return False


def _block_name(family_args: Mapping[str, Any]) -> str:
    block = family_args.get("block")
    if isinstance(block, Mapping):
        return str(block.get("kind", "")).lower()
    return str(block or "").lower()


def spec_variants(family_args: Mapping[str, Any], input_shape: tuple[int, ...]) -> set[str]:
    """The facts of a spec that select a recipe variant."""
    shape = tuple(input_shape)
    facts = {
        "svhn": str(family_args.get("dataset", "")).lower() == "svhn",
        "imagenet": str(family_args.get("dataset", "")).lower() == "imagenet" or shape[-1:] >= (64,),
        "gated": _mentions_gate(family_args),
        "highway": "highway" in _block_name(family_args),
        "mnist": shape[-2:] == (28, 28),
    }
    return {name for name, holds in facts.items() if holds}


def default_recipe_name(family: str | None, family_args: Mapping[str, Any], input_shape: tuple[int, ...]) -> str:
    """The paper recipe a family trains with when no --recipe is given."""
    variants = spec_variants(family_args, input_shape)
    for variant in (*[v for v in VARIANT_ORDER if v in variants], ""):
        if (family, variant) in DEFAULT_RECIPES:
            return DEFAULT_RECIPES[(family, variant)]
    from archlang.train.recipes import recipe_names

    raise ArchlangError(
        "no default recipe for a hand-written network on this input shape",
        hint=f"pass --recipe NAME or a YAML file, or write train(recipe=\"NAME\") in the spec; "
             f"shipped recipes: {', '.join(recipe_names())}",
    )


def clause_recipe(train_args: Mapping[str, Any], spans: Mapping[str, Span],
                  source: Source | None) -> tuple[str | None, Span | None]:
    """The recipe the spec's `train(recipe=...)` names, and where."""
    if "recipe" not in train_args:
        return None, None
    value, span = train_args["recipe"], spans.get("recipe")
    if not isinstance(value, str) or not value:
        raise ArchlangError(f"train(recipe=...) names a recipe, got {shorten(repr(value), 60)}", source=source,
                            span=span, hint='a shipped name or a YAML file, e.g. train(recipe="wrn-cifar")')
    return value, span


# ---- bn momentum -----------------------------------------------------------------------------


def _explicit_bn(node: Any, depth: int = 0) -> Iterator[Any]:
    """Batchnorm nodes of the spec whose momentum is written out (not a family's default)."""
    from pydantic import BaseModel

    if depth > 10_000:  # the parser bounds nesting far below this
        return
    if isinstance(node, BaseModel):
        if getattr(node, "kind", None) == "batchnorm" and "momentum" in node.model_fields_set:
            yield node
        for name in type(node).model_fields:
            yield from _explicit_bn(getattr(node, name), depth + 1)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _explicit_bn(item, depth + 1)


def where_set(source: Source | None, span: Span | None, label: str) -> str:
    """`file:line:col: the line` (or the label alone) for a hint that points at a second place."""
    if source is None or span is None:
        return label
    return f"{source.filename}:{span.line}:{span.column}: {shorten(source.line_text(span.line).strip(), 100)}"


def check_bn_momentum(bn_momentum: float | None, network: Any, spec_source: Source | None,
                      recipe_place: str) -> None:
    """Refuse a recipe bn_momentum that would silently override a spec's bn(momentum=...)."""
    if bn_momentum is None or network is None:
        return
    for node in _explicit_bn(network):
        if abs(node.momentum - bn_momentum) > 1e-12:
            raise ArchlangError(
                f"the recipe's bn_momentum {bn_momentum:g} contradicts this bn(momentum={node.momentum:g})",
                source=spec_source, span=node.arg_span("momentum"),
                hint=f"the recipe sets it at {recipe_place}; remove one of the two or make them agree "
                     f"(--set bn_momentum={node.momentum:g})")
