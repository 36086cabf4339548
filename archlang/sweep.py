"""Sweeps and definitions: `{a, b}` sets expand into one program per combination, `let` names inline.

Both work on the AST, before any validation, so each network of a sweep is validated
(and its errors reported) exactly like a spec written out by hand.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from archlang import ast
from archlang.errors import ArchlangError, Source, Span, did_you_mean, shorten
from archlang.ir.lower import PYTHON_HINT, PYTHON_NAMES, known_names
from archlang.ir.nodes import model_for
from archlang.parser import MAX_NESTING, end_span

# A sweep larger than this is almost certainly a typo (and would take minutes to count).
MAX_SWEEP = 10_000
# `let a1 = seq(a0, a0)`, `let a2 = seq(a1, a1)`, ... doubles with every line: refuse before inlining.
MAX_INLINED = 100_000


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


def _calls_in(expr: ast.Expr) -> list[ast.Call]:
    own = [expr] if isinstance(expr, ast.Call) else []
    return own + [c for child in ast.children(expr) for c in _calls_in(child)]


def _names_used(expr: ast.Expr) -> list[ast.Name]:
    if isinstance(expr, ast.Name):
        return [expr]
    return [n for child in ast.children(expr) for n in _names_used(child)]


def _train_names(program: ast.Program) -> set[str]:
    """`let` names the train(...) clause uses, directly or through other lets: their names are free text."""
    lets = {s.name: s for s in program.statements if isinstance(s, ast.Let)}
    todo = [n.id for s in program.statements if isinstance(s, ast.Call) and s.func == "train"
            for n in _names_used(s)]
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in lets and name not in found:
            found.add(name)
            todo += [n.id for n in _names_used(lets[name].value)]
    return found


def _unknown_name(name: ast.Name, defined: dict[str, ast.Let]) -> ArchlangError:
    if name.id.lower() in ("nan", "inf", "infinity"):
        hint = "numbers must be finite"
    elif name.id == "train":
        hint = "train(...) is a clause on its own line, not a layer"
    elif name.id in PYTHON_NAMES:
        hint = PYTHON_HINT
    else:
        hint = did_you_mean(name.id, [*defined, *known_names(), "true", "false"]) or \
            f"define it first with `let {shorten(name.id)} = ...`"
    return ArchlangError(f"unknown name '{shorten(name.id)}'", span=name.span, hint=hint)


def _measure(expr: ast.Expr, sizes: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(values, bracket depth) of an expression once the `let` names in it are inlined."""
    if isinstance(expr, ast.Name):
        return sizes.get(expr.id, (1, 0))
    children = ast.children(expr)
    if not children:
        return (1, 1 if isinstance(expr, (ast.Call, ast.ListV)) else 0)
    measured = [_measure(c, sizes) for c in children]
    return 1 + sum(m[0] for m in measured), 1 + max(m[1] for m in measured)


def _check_definitions(program: ast.Program) -> None:
    """Refuse redefinitions, use before definition, self-reference and unknown names, pointing at the name."""
    defined: dict[str, ast.Let] = {}
    later = {s.name: s for s in program.statements if isinstance(s, ast.Let)}
    free = _train_names(program)
    sizes: dict[str, tuple[int, int]] = {}
    for stmt in program.statements:
        value = stmt.value if isinstance(stmt, ast.Let) else stmt
        is_train = isinstance(stmt, ast.Call) and stmt.func == "train"
        for name in _names_used(value):
            if isinstance(stmt, ast.Let) and name.id == stmt.name:
                raise ArchlangError(f"'{name.id}' is defined in terms of itself", span=name.span,
                                    hint="a definition can only use names defined before it")
            if name.id not in defined and name.id in later:
                raise ArchlangError(f"'{name.id}' is used before its definition on line {later[name.id].span.line}",
                                    span=name.span, hint="move the `let` above its first use")
            known = name.id in defined or name.id in known_names()
            if not known and not is_train and not (isinstance(stmt, ast.Let) and stmt.name in free):
                raise _unknown_name(name, defined)
        for call in _calls_in(value):
            if call.func in defined or call.func in later:
                raise ArchlangError(f"'{call.func}' is a `let` name, not a layer; it cannot be called",
                                    span=call.func_span, hint=f"use it as a value: {call.func}")
        size, depth = _measure(value, sizes)
        if size > MAX_INLINED or depth > MAX_NESTING:
            what = f"'{stmt.name}'" if isinstance(stmt, ast.Let) else "the network"
            problem = (f"grows to more than {MAX_INLINED:,} values" if size > MAX_INLINED
                       else f"nests brackets more than {MAX_NESTING} deep")
            raise ArchlangError(f"{what} {problem} once its `let` names are inlined",
                                span=stmt.name_span if isinstance(stmt, ast.Let) else stmt.span,
                                hint="use repeat(n, block) instead of repeating a definition")
        if isinstance(stmt, ast.Let):
            if stmt.name in defined:
                raise ArchlangError(f"'{stmt.name}' is already defined on line {defined[stmt.name].span.line}",
                                    span=stmt.name_span, hint="pick another name")
            if model_for(stmt.name) is not None or stmt.name in ("train", "true", "false"):
                raise ArchlangError(f"'{stmt.name}' is a built-in name and cannot be redefined",
                                    span=stmt.name_span, hint=f"call it e.g. my_{stmt.name}")
            defined[stmt.name] = stmt
            sizes[stmt.name] = (size, depth)


def _top_level(program: ast.Program, source: Source) -> tuple[ast.Expr, ast.Call | None]:
    exprs = [s for s in program.statements if not isinstance(s, ast.Let)]
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
        _sets_in(stmt.value if isinstance(stmt, ast.Let) else stmt, sets)
    return sets


def sweep_size(program: ast.Program, source: Source) -> tuple[int, Span | None]:
    """How many networks a spec stands for (without building them), and where its first set is."""
    try:
        sets = _all_sets(program)
    except ArchlangError as err:
        raise err.with_location(source, err.span) from None
    size = 1
    for s in sets:
        size *= len(s.items)
    return size, (sets[0].span if sets else None)


def resolve(program: ast.Program, source: Source, expand: bool = True) -> list[Resolved]:
    """All concrete programs of a spec: one unless it holds sets, then their product.

    With expand=False only the checks run (definitions, one network, sweep size) and [] is returned.
    """
    try:
        _check_definitions(program)
        network, train = _top_level(program, source)
        sets = _all_sets(program)
        size = 1
        for s in sets:
            size *= len(s.items)
            if size > MAX_SWEEP:
                raise ArchlangError(f"the sweep has more than {MAX_SWEEP:,} networks", span=s.span,
                                    hint="split it into several specs")
        if not expand:
            return []
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
        escaped = expr.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return '"' + escaped + '"'
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
