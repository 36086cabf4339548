"""Sweeps and definitions: `{a, b}` sets expand into one program per combination, `let` names inline.

Both work on the AST, before any validation, so each network of a sweep is validated
(and its errors reported) exactly like a spec written out by hand.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from archlang import ast
from archlang.errors import ArchlangError, Source, Span
from archlang.ir.nodes import model_for

# A sweep larger than this is almost certainly a typo (and would take minutes to count).
MAX_SWEEP = 10_000


@dataclass(frozen=True)
class Resolved:
    """One concrete program: the network expression and the optional train(...) clause, lets inlined."""

    network: ast.Expr
    train: ast.Call | None
    choices: tuple[tuple[Span, ast.Expr], ...] = ()


def _sets_in(expr: ast.Expr, found: list[ast.SetV]) -> None:
    if isinstance(expr, ast.SetV):
        found.append(expr)
        for item in expr.items:
            if _contains_set(item):
                raise ArchlangError("sets cannot be nested", span=item.span, hint="write one set with all values")
        return
    for child in ast.children(expr):
        _sets_in(child, found)


def _contains_set(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.SetV) or any(_contains_set(c) for c in ast.children(expr))


def _substitute(expr: ast.Expr, choice: dict[int, ast.Expr], env: dict[str, ast.Expr]) -> ast.Expr:
    """Replace each set by its chosen item and each let-bound name by its value."""
    if isinstance(expr, ast.SetV):
        return _substitute(choice[id(expr)], choice, env)
    if isinstance(expr, ast.Name):
        return env.get(expr.id, expr)
    if isinstance(expr, ast.ListV):
        return replace(expr, items=tuple(_substitute(i, choice, env) for i in expr.items))
    if isinstance(expr, ast.Call):
        args = tuple(replace(a, value=_substitute(a.value, choice, env)) for a in expr.args)
        return replace(expr, args=args)
    return expr


def _names_used(expr: ast.Expr) -> list[ast.Name]:
    if isinstance(expr, ast.Name):
        return [expr]
    return [n for child in ast.children(expr) for n in _names_used(child)]


def _check_definitions(program: ast.Program) -> None:
    """Refuse redefinitions, use before definition and self-reference, pointing at the name."""
    defined: dict[str, ast.Let] = {}
    later = {s.name: s for s in program.statements if isinstance(s, ast.Let)}
    for stmt in program.statements:
        value = stmt.value if isinstance(stmt, ast.Let) else stmt
        for name in _names_used(value):
            if isinstance(stmt, ast.Let) and name.id == stmt.name:
                raise ArchlangError(f"'{name.id}' is defined in terms of itself", span=name.span,
                                    hint="a definition can only use names defined before it")
            if name.id not in defined and name.id in later:
                raise ArchlangError(f"'{name.id}' is used before its definition on line {later[name.id].span.line}",
                                    span=name.span, hint="move the `let` above its first use")
        if isinstance(stmt, ast.Let):
            if stmt.name in defined:
                raise ArchlangError(f"'{stmt.name}' is already defined on line {defined[stmt.name].span.line}",
                                    span=stmt.name_span, hint="pick another name")
            if model_for(stmt.name) is not None or stmt.name in ("train", "true", "false"):
                raise ArchlangError(f"'{stmt.name}' is a built-in name and cannot be redefined",
                                    span=stmt.name_span, hint=f"call it e.g. my_{stmt.name}")
            defined[stmt.name] = stmt


def _top_level(program: ast.Program) -> tuple[ast.Expr, ast.Call | None]:
    exprs = [s for s in program.statements if not isinstance(s, ast.Let)]
    trains = [e for e in exprs if isinstance(e, ast.Call) and e.func == "train"]
    networks = [e for e in exprs if e not in trains]
    if len(trains) > 1:
        raise ArchlangError("a spec holds at most one train(...) clause", span=trains[1].func_span)
    if not networks:
        raise ArchlangError("the spec defines no network", hint="write a network expression, e.g. wrn(depth=28, k=10)")
    if len(networks) > 1:
        raise ArchlangError("a spec holds one network expression; this is a second one", span=networks[1].span,
                            hint="bind parts with `let name = ...` and use them in one expression")
    return networks[0], (trains[0] if trains else None)


def resolve(program: ast.Program, source: Source) -> list[Resolved]:
    """All concrete programs of a spec: one unless it holds sets, then their product."""
    try:
        _check_definitions(program)
        network, train = _top_level(program)
        sets: list[ast.SetV] = []
        for stmt in program.statements:
            _sets_in(stmt.value if isinstance(stmt, ast.Let) else stmt, sets)
        size = 1
        for s in sets:
            size *= len(s.items)
            if size > MAX_SWEEP:
                raise ArchlangError(f"the sweep has more than {MAX_SWEEP} networks", span=s.span,
                                    hint="split it into several specs")
        results = []
        for combo in itertools.product(*(s.items for s in sets)):
            choice = {id(s): item for s, item in zip(sets, combo)}
            env: dict[str, ast.Expr] = {}
            for stmt in program.statements:
                if isinstance(stmt, ast.Let):
                    env[stmt.name] = _substitute(stmt.value, choice, env)
            results.append(Resolved(_substitute(network, choice, env),
                                    _substitute(train, choice, env) if train else None,  # type: ignore[arg-type]
                                    tuple((s.span, item) for s, item in zip(sets, combo))))
        return results
    except ArchlangError as err:
        raise err.with_location(source, err.span) from None


def canonical(expr: ast.Expr) -> str:
    """The spec text of an expression, one normal spelling: what `params --json` and run folders record."""
    if isinstance(expr, ast.Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, ast.Str):
        return '"' + expr.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(expr, (ast.Int, ast.Float)):
        return repr(expr.value)
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.ListV):
        return "[" + ", ".join(canonical(i) for i in expr.items) + "]"
    if isinstance(expr, ast.SetV):
        return "{" + ", ".join(canonical(i) for i in expr.items) + "}"
    parts = [(f"{a.name}=" if a.name else "") + canonical(a.value) for a in expr.args]
    return f"{expr.func}(" + ", ".join(parts) + ")"
