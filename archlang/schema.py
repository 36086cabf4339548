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
