"""Recipe YAML, read safely and with bounds, into recipe layers; recipe values shown briefly.

PyYAML's safe loader runs no code, but it expands aliases by reference (446 bytes of nested
aliases once became a 1.48 GB error message when printed), recurses once per nesting level
(5,000 levels: RecursionError) and parses any integer (10^5000: ValueError). Every recipe
text, a file or a --set value, is scanned as a flat event stream first, which counts the
values that aliases expand to and the nesting depth without recursion; then it is loaded.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from archlang.errors import ArchlangError, Source, Span, did_you_mean, shorten

MAX_TEXT = 1 << 20  # a recipe is a page of fields; a megabyte of YAML is not one
MAX_DEPTH = 32
MAX_VALUES = 10_000  # values after alias expansion

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40


def shown(value: Any, limit: int = 200) -> str:
    """A recipe value for a message: bounded however large or nested (shared by aliases) it is."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int too long for str(): Python refuses over 4,300 digits
        text = f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<unprintable>"
    return shorten(text, limit)


def _span_at(mark: Any) -> Span | None:
    if mark is None:
        return None
    return Span(mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2, mark.index, mark.index + 1)


def node_span(node: yaml.Node, last: yaml.Node | None = None) -> Span:
    start, end = node.start_mark, (last or node).end_mark
    return Span(start.line + 1, start.column + 1, end.line + 1, end.column + 1, start.index, end.index)


def _refuse(message: str, source: Source, mark: Any) -> ArchlangError:
    return ArchlangError(message, source=source, span=_span_at(mark))


def check_bounds(text: str, source: Source) -> None:
    """Refuse YAML nested deeper than MAX_DEPTH or expanding to more than MAX_VALUES values."""
    if len(text) > MAX_TEXT:
        raise ArchlangError(f"the recipe is {len(text):,} characters; a recipe is at most {MAX_TEXT:,}",
                            path=source.filename)
    anchors: dict[str, int] = {}
    stack: list[list[Any]] = [[0, None]]  # per open collection: [values inside, its anchor]
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([1, event.anchor])
            if len(stack) - 1 > MAX_DEPTH:
                raise _refuse(f"the recipe nests more than {MAX_DEPTH} levels deep", source, event.start_mark)
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            size, anchor = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            size, anchor = anchors.get(event.anchor, 1), None
        else:
            continue
        if anchor is not None:
            anchors[anchor] = size
        stack[-1][0] += size
        if stack[-1][0] > MAX_VALUES or stack[0][0] > MAX_VALUES:
            raise _refuse(f"the recipe expands to more than {MAX_VALUES:,} values (nested aliases?)", source,
                          event.start_mark)


def _yaml_error(exc: yaml.YAMLError, source: Source) -> ArchlangError:
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):  # "expected a single document ... but found another"
        problem = f"{context} {problem}"
    return ArchlangError(f"recipe is not valid YAML: {shorten(problem, 200)}", source=source,
                         span=_span_at(getattr(exc, "problem_mark", None)))


def load(text: str, source: Source) -> tuple[Any, yaml.Node | None]:
    """The value and the node tree of a recipe text, bounded; every failure one ArchlangError."""
    try:
        check_bounds(text, source)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        return yaml.safe_load(text), root
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    except ValueError as exc:  # int("1" * 5000): Python's limit on integer digits
        raise ArchlangError(f"recipe value cannot be read: {shorten(str(exc).split(':')[0], 120)}",
                            source=source) from None


def mapping_spans(root: yaml.Node, source: Source) -> dict[str, Span]:
    """Where each top-level field is written; a field given twice is refused (YAML keeps the last)."""
    spans: dict[str, Span] = {}
    for key, value in root.value:
        name = str(key.value)
        if name in spans:
            raise ArchlangError(f"recipe field '{shorten(name)}' is given twice", source=source,
                                span=node_span(key), hint="YAML would silently keep the last one; remove one")
        spans[name] = node_span(key, value)
    return spans


def parse_flag_value(text: str) -> Any:
    """A --set value as YAML (`[0.5, 0.75]`, `true`, `1e-3`), bounded; unparsable text stays text."""
    source = Source(text, "--set")
    try:
        value, _ = load(text, source) if text.strip() else (text, None)
    except ArchlangError as err:
        if err.message.startswith("recipe is not valid YAML"):
            return text
        raise ArchlangError(f"the value {err.message.removeprefix('the recipe ')}",
                            hint="--set FIELD=VALUE takes a number, a word or a short [list]") from None
    return value


# Shipped recipes are package data, read through importlib.resources (they load from a wheel or a zip).
RECIPE_DIR = resources.files("archlang") / "recipes"


@dataclass
class Layer:
    """One source of recipe fields, with where each field was written (for error messages)."""

    kind: Literal["yaml", "train", "flags"]
    values: dict[str, Any]
    source: Source | None = None
    spans: dict[str, Span] = field(default_factory=dict)
    path: str | None = None


def recipe_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in RECIPE_DIR.iterdir() if p.name.endswith(".yaml"))


def _read_yaml_layer(text: str, filename: str) -> Layer:
    """Parse a recipe YAML safely (no Python tags, bounded), keeping the position of every key."""
    source = Source(text, filename)
    values, root = load(text, source)
    if values is None:
        values, root = {}, None
    if not isinstance(values, dict) or (root is not None and not isinstance(root, yaml.MappingNode)):
        raise ArchlangError("a recipe must be a mapping of `field: value` lines", source=source,
                            span=node_span(root) if root is not None else None)
    spans = mapping_spans(root, source) if root is not None else {}
    return Layer("yaml", {str(k): v for k, v in values.items()}, source, spans, filename)


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT + 1)
        if len(data) > MAX_TEXT:
            raise ArchlangError(f"the recipe file is over {MAX_TEXT:,} bytes; a recipe is a page of "
                                "fields", path=str(path))
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchlangError(f"cannot read recipe file: {shorten(str(exc), 200)}", path=str(path)) from None


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or Path(name).is_file()


def load_recipe_layer(name_or_path: str) -> tuple[str, Layer]:
    """Find a recipe by shipped name or file path and parse it."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise ArchlangError("recipe file not found", path=str(path),
                                hint=f"shipped recipes: {', '.join(recipe_names())}")
        return path.stem, _read_yaml_layer(_read_text(path), str(path))
    path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = recipe_names()
        hint = did_you_mean(name_or_path, names) or f"shipped recipes: {', '.join(names)}"
        raise ArchlangError(f"unknown recipe '{shorten(name_or_path)}'", hint=hint)
    return name_or_path, _read_yaml_layer(path.read_text(encoding="utf-8"), str(path))
