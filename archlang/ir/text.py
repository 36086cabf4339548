"""IR -> spec text: the inverse of lowering, so transformed networks (pruned, folded) are specs again."""

from __future__ import annotations

from typing import Any

from archlang.ir.base import IRNode

# Names under which nodes print when the kind is not the usual spelling.
_SPELLING = {"batchnorm": "bn"}


def _value(value: Any) -> str:
    if isinstance(value, IRNode):
        return to_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return repr(value)


def to_text(node: IRNode) -> str:
    """A spec expression that lowers back to an equal node (defaults left out, variadics positional)."""
    kind = node.kind  # type: ignore[attr-defined]
    name = _SPELLING.get(kind, kind)
    parts: list[str] = []
    if node.variadic:
        parts += [_value(v) for v in getattr(node, node.variadic)]
    # Required arguments that lead the positional order print bare: linear(50), not linear(out=50).
    bare: set[str] = set()
    for field_name in ([] if node.variadic else node.positional_names()):
        if not type(node).model_fields[field_name].is_required():
            break
        parts.append(_value(getattr(node, field_name)))
        bare.add(field_name)
    for field_name in node.arg_names():
        if field_name == node.variadic or field_name in bare:
            continue
        value = getattr(node, field_name)
        field = type(node).model_fields[field_name]
        default = field.get_default(call_default_factory=True)
        if not field.is_required() and value == default:
            continue
        parts.append(f"{field_name}={_value(value)}")
    if not parts and not node.variadic and all(not f.is_required() for n, f in type(node).model_fields.items()
                                               if n != "kind"):
        return name
    return f"{name}({', '.join(parts)})"


def to_spec(node: IRNode, width: int = 100) -> str:
    """Multi-line text of a network: one top-level item per line, so diffs and reading stay easy."""
    text = to_text(node)
    if len(text) <= width or node.variadic is None:
        return text
    items = [to_text(v) for v in getattr(node, node.variadic)]
    return f"{_SPELLING.get(node.kind, node.kind)}(\n" + ",\n".join(f"    {i}" for i in items) + "\n)"  # type: ignore[attr-defined]
