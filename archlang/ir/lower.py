"""AST -> validated IR: look up each call's node model, bind its arguments, let Pydantic check them.

Pydantic's errors are translated back into the user's terms: the argument's name, the
value written, the place it was written, and a suggestion where one exists.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from archlang import arith, ast
from archlang.errors import ArchlangError, Span, did_you_mean, shorten
from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.nodes import ALIASES, FAMILY_NAMES, NODE_MODELS, model_for, takes_no_arguments


def _literal_values(annotation: Any) -> frozenset[str]:
    """The string spellings a field accepts (its Literal[...] members, however deeply nested)."""
    if get_origin(annotation) is Literal:
        return frozenset(a for a in get_args(annotation) if isinstance(a, str))
    found: frozenset[str] = frozenset()
    for arg in get_args(annotation):
        found |= _literal_values(arg)
    return found


def symbols_of(model: type[IRNode], field: str) -> frozenset[str]:
    return _literal_values(model.model_fields[field].annotation) if field in model.model_fields else frozenset()


# Names someone pasting Python would write; a spec is data, so none of them means anything.
PYTHON_NAMES = frozenset({"__import__", "import", "from", "def", "class", "lambda", "return", "exec", "eval",
                          "open", "compile", "globals", "locals", "getattr", "setattr", "os", "sys", "subprocess",
                          "print", "None", "self"})
PYTHON_HINT = "a spec is data, not Python: it holds only networks, layers and plain values"


@lru_cache(maxsize=1)
def known_names() -> frozenset[str]:
    """Every bare name a network can use: node and family names, aliases, and the symbols fields accept."""
    names = set(NODE_MODELS) | set(ALIASES)
    for model in NODE_MODELS.values():
        for field in model.arg_names():
            names |= symbols_of(model, field)
    return frozenset(names)


def _signature(model: type[IRNode], name: str) -> str:
    parts = []
    for field_name in model.arg_names():
        field = model.model_fields[field_name]
        if field.is_required():
            parts.append(field_name)
        elif field.default_factory is None:
            default = field.default
            shown = "true" if default is True else "false" if default is False else default
            parts.append(f"{field_name}={shown}")
        else:
            parts.append(f"{field_name}=...")
    if model.variadic:
        parts = [f"{model.variadic}..."] + [p for p in parts if not p.startswith(model.variadic)]
    return f"{name}({', '.join(parts)})"


def _describe(value: Any) -> str:
    """A value as the user would write it, short enough for a one-line message."""
    if isinstance(value, IRNode):
        return f"{type(value).model_fields['kind'].default}(...)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(shorten(value))
    if isinstance(value, list):
        return shorten("[" + ", ".join(_describe(v) for v in value[:20]) + ("]" if len(value) <= 20 else ", ...]"))
    return shorten(repr(value))


def _number_hint(value: Any, integer: bool) -> str | None:
    """A suggestion for a number written the wrong way: 28.0 for an integer, "28" in quotes."""
    if isinstance(value, float) and integer and math.isfinite(value) and value.is_integer():
        return f"write {int(value)} without a decimal point"
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        if math.isfinite(number):
            return f"remove the quotes: numbers are written without them, e.g. {shorten(value.strip())}"
    return None


def _unknown_call(call: ast.Call) -> ArchlangError:
    if call.func == "train":
        return ArchlangError("train(...) is a clause of its own, not a network or layer", span=call.func_span,
                             hint="write train(...) on its own line after the network, e.g. train(epochs=10)")
    names = list(NODE_MODELS) + list(ALIASES)
    hint = (PYTHON_HINT if call.func in PYTHON_NAMES else None) or did_you_mean(call.func, names) or \
        f"families: {', '.join(FAMILY_NAMES)}; core nodes: see docs/language.md"
    return ArchlangError(f"unknown network or layer '{shorten(call.func)}'", span=call.func_span, hint=hint)


def _bind(call: ast.Call, model: type[IRNode], name: str) -> tuple[dict[str, Any], dict[str, Span]]:
    """Map positional and keyword arguments onto the model's fields, refusing unknown and duplicates."""
    data: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    fields = model.arg_names()
    positional = call.positional
    if any(a.name is None for a in call.args[len(positional):]) or \
            any(a.name is not None for a in call.args[: len(positional)]):
        first_kw = next(a for a in call.args if a.name is not None)
        late = next(a for a in call.args[call.args.index(first_kw):] if a.name is None)
        raise ArchlangError("positional argument after a keyword argument", span=late.span,
                            hint="put positional arguments first, or name this one")
    if model.variadic:
        data[model.variadic] = [lower(a.value, symbols_of(model, model.variadic)) for a in positional]
        for i, a in enumerate(positional):
            spans[f"{model.variadic}.{i}"] = a.span
            _mark_quotients(a.value, f"{model.variadic}.{i}", spans)
        if positional:
            spans[model.variadic] = positional[0].span
    else:
        order = model.positional_names()
        if len(positional) > len(order):
            extra = positional[len(order)]
            takes = f"takes {len(order)} positional argument{'s' if len(order) != 1 else ''}" if order else \
                "takes no positional arguments"
            raise ArchlangError(f"{name}() {takes}, got {len(positional)}", span=extra.span,
                                hint=f"signature: {_signature(model, name)}")
        for field_name, a in zip(order, positional):
            data[field_name] = lower(a.value, symbols_of(model, field_name))
            spans[field_name] = a.span
            _mark_quotients(a.value, field_name, spans)
    for a in call.keywords:
        assert a.name is not None
        if a.name not in fields or a.name == model.variadic:
            hint = did_you_mean(a.name, fields) or f"signature: {_signature(model, name)}"
            raise ArchlangError(f"{name}() has no argument '{shorten(a.name)}'", span=a.name_span or a.span,
                                hint=hint)
        if a.name in data:
            how = "twice" if a.name in {k.name for k in call.keywords if k is not a} else "both by position and by name"
            raise ArchlangError(f"argument '{a.name}' of {name}() is given {how}", span=a.name_span or a.span)
        data[a.name] = lower(a.value, symbols_of(model, a.name))
        spans[a.name] = a.span
        _mark_quotients(a.value, a.name, spans)
    return data, spans


def _mark_quotients(expr: ast.Expr, key: str, spans: dict[str, Span]) -> None:
    """Record under "KEY/" the values that came from '/', so a field needing an int can hint at '//'."""
    value = arith.evaluate(expr)
    if isinstance(value, ast.Float) and value.quotient:
        spans[f"{key}/"] = value.span
    if isinstance(value, ast.ListV):
        for i, item in enumerate(value.items):
            _mark_quotients(item, f"{key}.{i}", spans)


QUOTIENT_HINT = "'/' always gives a number with a decimal point; '//' divides integers"


def _expected_values(error: dict[str, Any]) -> list[str]:
    expected = (error.get("ctx") or {}).get("expected", "")
    return [part.strip(" '") for part in expected.replace(" or ", ",").split(",") if part.strip(" '")]


def _message(name: str, field: str, error: dict[str, Any], value: Any,
             expected: str | None = None) -> tuple[str, str | None]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    shown = _describe(value)
    if kind == "missing":
        return f"{name}() is missing the argument '{field}'", None
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"{field} must be {op} {bound}, got {shown}", None
    if kind == "literal_error":
        choices = _expected_values(error)
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else None
        return f"{field} must be one of {', '.join(choices)}; got {shown}", hint
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"{field} must be an integer, got {shown}", _number_hint(value, integer=True)
    if kind in ("float_type", "float_parsing"):
        return f"{field} must be a number, got {shown}", _number_hint(value, integer=False)
    if kind == "bool_type":
        quoted = isinstance(value, str) and value.strip().lower() in ("true", "false")
        return f"{field} must be true or false, got {shown}", \
            (f"write {value.strip().lower()} without quotes" if quoted else None)
    if kind == "list_type":
        return f"{field} must be a list like [3, 32, 32], got {shown}", None
    if kind in ("model_type", "model_attributes_type", "union_tag_invalid", "model_class_type",
                "union_tag_not_found", "is_instance_of", "dataclass_type"):
        return f"{shown} is not a valid {field} for {name}()", _node_hint(value, expected)
    return f"bad {field} for {name}(): {error['msg']}", None


def _node_hint(value: Any, expected: str | None) -> str | None:
    """Why a value cannot stand where a node was expected, or which nodes can."""
    kind = type(value).model_fields["kind"].default if isinstance(value, IRNode) else None
    if kind in FAMILY_NAMES:
        return "a family is a whole network; build custom networks from core nodes (seq, conv, residual, ...)"
    if kind == "B":
        return "a block type B(...) only means something as wrn(block=...)"
    if isinstance(value, str) and "(" in value:
        return f"a node is written without quotes: {shorten(value)}"
    return f"expected {expected}" if expected else None


def _node_kinds(annotation: Any) -> list[str]:
    """The node spellings a field accepts (B(...), gated(...)), found through Optional/Union/Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, IRNode):
        return [annotation.model_fields["kind"].default]
    return [k for arg in get_args(annotation) for k in _node_kinds(arg)]


def _expected_nodes(model: type[IRNode], field: str) -> str | None:
    if field not in model.model_fields:
        return None
    kinds = list(dict.fromkeys(_node_kinds(model.model_fields[field].annotation)))
    if not kinds or len(kinds) > 4:
        return None
    return " or ".join(f"{k}(...)" for k in kinds)


def _value_at(data: dict[str, Any], loc: tuple[Any, ...]) -> Any:
    value: Any = data
    for key in loc:
        if isinstance(value, dict) and key in value or isinstance(value, list) and isinstance(key, int) and key < len(value):
            value = value[key]
        else:
            break
    return value


def _field_phrase(model: type[IRNode], field: str) -> str:
    """How a field is named in a message: seq's variadic `items` are each an 'item'."""
    return {"items": "item", "kernels": "kernel size"}.get(field, field) if field == model.variadic else field


def _validation_error(err: ValidationError, call: ast.Call, name: str, model: type[IRNode],
                      data: dict[str, Any], spans: dict[str, Span]) -> ArchlangError:
    errors = err.errors()
    # Union failures list every alternative; the most specific one is the one to show.
    error = min(errors, key=lambda e: (e["type"] in ("model_type", "is_instance_of", "model_attributes_type",
                                                     "literal_error", "string_type"), -len(e["loc"])))
    loc = tuple(error["loc"])
    field = str(loc[0]) if loc else ""
    value = _value_at(data, loc[:1]) if loc else None
    if isinstance(value, (str, IRNode, bool, int, float)) is False and len(loc) > 1:
        value = _value_at(data, loc)
    span = spans.get(f"{field}.{loc[1]}") if len(loc) > 1 else None
    span = span or spans.get(field) or call.func_span
    if error["type"] == "missing":
        span = call.func_span
    # A string where a node is expected: list the allowed spellings in the hint.
    if isinstance(value, str) and any(e["type"] == "literal_error" for e in errors):
        choices = sorted({c for e in errors if e["type"] == "literal_error" for c in _expected_values(e)})
        hint = did_you_mean(value, choices + list(NODE_MODELS)) or f"expected one of: {', '.join(choices)}"
        return ArchlangError(f"{_describe(value)} is not a valid {_field_phrase(model, field)} for {name}()",
                             span=span, hint=hint)
    message, hint = _message(name, _field_phrase(model, field), error, value, _expected_nodes(model, field))
    key = ".".join(str(part) for part in loc[:2])
    if error["type"] in ("int_type", "int_from_float") and f"{key}/" in spans:
        hint = QUOTIENT_HINT
    if error["type"] == "missing":
        hint = f"signature: {_signature(model, name)}"
    return ArchlangError(message, span=span, hint=hint)


def lower_call(call: ast.Call) -> IRNode:
    model = model_for(call.func)
    if model is None or call.func == "train":
        raise _unknown_call(call)
    data, spans = _bind(call, model, call.func)
    try:
        node = model.model_validate(data)
    except ValidationError as err:
        raise _validation_error(err, call, call.func, model, data, spans) from None
    except FieldProblem as problem:
        span = spans.get(problem.field or "", call.func_span)
        raise ArchlangError(problem.message, span=span, hint=problem.hint) from None
    node.at(call.span)
    node._arg_spans = spans
    return node


def lower(expr: ast.Expr, symbols: frozenset[str] = frozenset()) -> Any:
    """The IR value of an expression: a node for calls, plain Python values otherwise.

    A bare name is a symbol when the receiving field spells it (`act=relu`), else a node
    that needs no arguments (`seq(conv(16), relu)`), else left as text for the field to refuse.
    """
    if isinstance(expr, ast.Call):
        return lower_call(expr)
    if isinstance(expr, ast.ListV):
        return [lower(i, symbols) for i in expr.items]
    if isinstance(expr, ast.SetV):
        raise ArchlangError("a set {...} cannot be used here", span=expr.span)
    if isinstance(expr, ast.TupleV):
        raise ArchlangError("a tuple (...) is not a value", span=expr.span,
                            hint="tuples bind several names at once: let (depth, k) = {(40, 4), (28, 10)}")
    if isinstance(expr, (ast.BinOp, ast.Unary)):
        return lower(arith.evaluate(expr), symbols)
    if isinstance(expr, ast.Name):
        if expr.id in symbols:
            return expr.id
        model = model_for(expr.id)
        if model is not None and takes_no_arguments(model):
            try:
                node = model()
            except FieldProblem as problem:  # e.g. a bare `wrn`: every argument optional, but not all absent
                raise ArchlangError(problem.message, span=expr.span,
                                    hint=problem.hint or f"signature: {_signature(model, expr.id)}") from None
            node.at(expr.span)
            return node
        if model is not None:
            raise ArchlangError(f"'{expr.id}' needs arguments here", span=expr.span,
                                hint=f"signature: {_signature(model, expr.id)}")
        return expr.id
    return expr.value  # type: ignore[union-attr]
