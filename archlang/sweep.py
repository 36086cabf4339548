"""Sweeps and definitions: `{a, b}` sets expand into one program per combination, definitions inline.

Both work on the AST, before any validation, so each network of a sweep is validated
(and its errors reported) exactly like a spec written out by hand. Arithmetic is folded here,
once the names in it are values (archlang/arith.py), and calls of parameterised definitions are
inlined, each with its own copy of the body (so its own weights).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from archlang import arith, ast
from archlang.ast import canonical
from archlang.definitions import MAX_INLINED, bind, check_definitions, check_tuple, statement_exprs
from archlang.errors import ArchlangError, Source, Span, shorten
from archlang.parser import end_span

__all__ = ["MAX_INLINED", "MAX_SWEEP", "Resolved", "canonical", "iter_resolved", "resolve", "sweep_size"]

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


@dataclass(frozen=True)
class _Scope:
    """What substitution replaces: the chosen item of each set, the value of each name, the definitions."""

    choice: dict[int, ast.Expr]
    env: dict[str, ast.Expr]
    defs: dict[str, ast.Def]
    # The parameters of the definition being inlined: an argument written as one of them is reported
    # where the call gave its value, not inside the body every call shares.
    params: frozenset[str] = frozenset()


def _substitute(expr: ast.Expr, scope: _Scope) -> ast.Expr:
    """Replace each set by its chosen item and each defined name by its value; fold arithmetic."""
    if isinstance(expr, ast.SetV):
        return _substitute(scope.choice[id(expr)], scope)
    if isinstance(expr, ast.Name):
        if expr.id in scope.env:
            return scope.env[expr.id]
        if expr.id in scope.defs:  # a definition whose parameters all have defaults, used bare
            return _inline(ast.Call(expr.id, (), expr.span, expr.span), scope)
        return expr
    if isinstance(expr, (ast.ListV, ast.TupleV)):
        return replace(expr, items=tuple(_substitute(i, scope) for i in expr.items))
    if isinstance(expr, ast.BinOp):
        return arith.fold(replace(expr, left=_substitute(expr.left, scope), right=_substitute(expr.right, scope)))
    if isinstance(expr, ast.Unary):
        return arith.fold(replace(expr, operand=_substitute(expr.operand, scope)))
    if isinstance(expr, ast.Call):
        if expr.func in scope.defs:
            return _inline(expr, scope)
        return replace(expr, args=tuple(_substitute_arg(a, scope) for a in expr.args))
    return expr


def _substitute_arg(arg: ast.Arg, scope: _Scope) -> ast.Arg:
    value = _substitute(arg.value, scope)
    if isinstance(arg.value, ast.Name) and arg.value.id in scope.params:
        return replace(arg, value=value, span=value.span)
    return replace(arg, value=value)


def _inline(call: ast.Call, scope: _Scope) -> ast.Expr:
    """The body of a called definition with its parameters bound; values are substituted where written."""
    d = scope.defs[call.func]
    values = {name: _substitute(value, scope) for name, value in bind(call, d).items()}
    return _substitute(d.value, replace(scope, env={**scope.env, **values}, params=frozenset(values)))


def _top_level(program: ast.Program, source: Source) -> tuple[ast.Expr, ast.Call | None]:
    exprs = [s for s in program.statements if not isinstance(s, ast.DEFINITIONS)]
    trains = [e for e in exprs if isinstance(e, ast.Call) and e.func == "train"]
    networks = [e for e in exprs if e not in trains]
    if len(trains) > 1:
        raise ArchlangError("a spec holds at most one train(...) clause", span=trains[1].func_span,
                            hint=f"merge its fields into the train(...) on line {trains[0].span.line}")
    if not networks:
        hint = "write a network expression, e.g. wrn(depth=28, k=10)"
        if trains:
            hint = "a train(...) clause needs a network: write one, e.g. wrn(depth=28, k=10)"
        elif program.statements:
            hint = "the `let` definitions name parts; add the network that uses them, e.g. wrn(depth=28, k=10)"
        elif source.text.strip():
            hint = "the spec holds only comments; write a network expression, e.g. wrn(depth=28, k=10)"
        raise ArchlangError("the spec defines no network", span=end_span(source), hint=hint)
    if len(networks) > 1:
        first, second = networks[0], networks[1]
        hint = "bind parts with `let name = ...` and use them in one expression"
        if isinstance(first, ast.Name) and isinstance(second, (ast.ListV, ast.SetV)) and \
                second.span.start_pos == first.span.end_pos:
            hint = f"arguments go in parentheses: {shorten(first.id)}(...)"
        raise ArchlangError("a spec holds one network expression; this is a second one", span=second.span,
                            hint=hint)
    return networks[0], (trains[0] if trains else None)


def _all_sets(program: ast.Program) -> list[ast.SetV]:
    sets: list[ast.SetV] = []
    for stmt in program.statements:
        for expr in statement_exprs(stmt):  # a definition's defaults may hold sets too
            _sets_in(expr, sets)
    return sets


def sweep_size(program: ast.Program, source: Source) -> tuple[int, Span | None]:
    """How many networks a spec stands for (without building them), and where its first set is."""
    with _located(source):
        sets = _all_sets(program)
    size = 1
    for s in sets:
        size *= len(s.items)
    return size, (sets[0].span if sets else None)


def _checked_sets(program: ast.Program, source: Source) -> tuple[ast.Expr, ast.Call | None, list[ast.SetV]]:
    check_definitions(program)
    network, train = _top_level(program, source)
    sets = _all_sets(program)
    size = 1
    for s in sets:
        size *= len(s.items)
        if size > MAX_SWEEP:
            raise ArchlangError(f"the sweep has more than {MAX_SWEEP:,} networks", span=s.span,
                                hint="split it into several specs")
    return network, train, sets


def _bind_statement(stmt: ast.Let | ast.TupleLet, scope: _Scope) -> None:
    value = _substitute(stmt.value, scope)
    if isinstance(stmt, ast.Let):
        scope.env[stmt.name] = value
        return
    check_tuple(stmt.names, value)  # a name bound to a set of tuples is only seen here
    assert isinstance(value, ast.TupleV)
    scope.env.update(zip(stmt.names, value.items))


def _one(program: ast.Program, network: ast.Expr, train: ast.Call | None, sets: list[ast.SetV],
         combo: tuple[ast.Expr, ...]) -> Resolved:
    scope = _Scope({id(s): item for s, item in zip(sets, combo)}, {},
                   {s.name: s for s in program.statements if isinstance(s, ast.Def)})
    for stmt in program.statements:
        if isinstance(stmt, (ast.Let, ast.TupleLet)):
            _bind_statement(stmt, scope)
    return Resolved(_substitute(network, scope),
                    _substitute(train, scope) if train else None,  # type: ignore[arg-type]
                    tuple((s.span, item) for s, item in zip(sets, combo)))


@contextmanager
def _located(source: Source) -> Iterator[None]:
    """Errors raised on the AST know their span, not the source: attach it."""
    try:
        yield
    except ArchlangError as err:
        raise err.with_location(source, err.span) from None


def iter_resolved(program: ast.Program, source: Source) -> Iterator[Resolved]:
    """The concrete programs of a spec one at a time (a sweep's networks need not all be held at once)."""
    with _located(source):
        network, train, sets = _checked_sets(program, source)
    for combo in itertools.product(*(s.items for s in sets)):
        with _located(source):
            resolved = _one(program, network, train, sets, combo)
        yield resolved


def resolve(program: ast.Program, source: Source, expand: bool = True) -> list[Resolved]:
    """All concrete programs of a spec: one unless it holds sets, then their product.

    With expand=False only the checks run (definitions, one network, sweep size) and [] is returned.
    """
    if not expand:
        with _located(source):
            _checked_sets(program, source)
        return []
    return list(iter_resolved(program, source))
