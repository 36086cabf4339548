"""Recipe YAML, read safely and with bounds, and recipe values shown briefly.

PyYAML's safe loader runs no code, but it expands aliases by reference (446 bytes of nested
aliases once became a 1.48 GB error message when printed), recurses once per nesting level
(5,000 levels: RecursionError) and parses any integer (10^5000: ValueError). Every recipe
text, a file or a --set value, is scanned as a flat event stream first, which counts the
values that aliases expand to and the nesting depth without recursion; then it is loaded.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

from archlang.errors import ArchlangError, Source, Span, shorten

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
