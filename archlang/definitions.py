"""The checks on a spec's definitions (`let`, parameterised `let f(...)`, tuple `let (a, b)`), before inlining.

Every name is defined before its use and once; a definition never reaches itself (the error names
the chain); calls of a parameterised definition bind like a family's (arity, unknown and duplicate
arguments, did-you-mean); a tuple let gets tuples of its own length. Sizes are measured as if every
name were inlined, so a definition that doubles with each line is refused before anything grows.
"""

from __future__ import annotations

from dataclasses import dataclass

from archlang import ast
from archlang.errors import ArchlangError, Span, did_you_mean, shorten
from archlang.ir.lower import PYTHON_HINT, PYTHON_NAMES, known_names
from archlang.ir.nodes import model_for
from archlang.parser import MAX_NESTING

# `let a1 = seq(a0, a0)`, `let a2 = seq(a1, a1)`, ... doubles with every line: refuse before inlining.
MAX_INLINED = 100_000

Definition = ast.Let | ast.Def | ast.TupleLet
PAIRED_HINT = "a paired sweep is written let (depth, k) = {(40, 4), (28, 10)}"


def bound_names(stmt: Definition) -> tuple[str, ...]:
    return stmt.names if isinstance(stmt, ast.TupleLet) else (stmt.name,)


def _name_spans(stmt: Definition) -> tuple[Span, ...]:
    return stmt.name_spans if isinstance(stmt, ast.TupleLet) else (stmt.name_span,)


def statement_exprs(stmt: Definition | ast.Expr) -> list[ast.Expr]:
    """What a statement's names refer to: its value, and a definition's defaults."""
    if isinstance(stmt, ast.Def):
        return [stmt.value] + [p.default for p in stmt.params if p.default is not None]
    return [stmt.value] if isinstance(stmt, ast.DEFINITIONS) else [stmt]


def calls_in(expr: ast.Expr) -> list[ast.Call]:
    own = [expr] if isinstance(expr, ast.Call) else []
    return own + [c for child in ast.children(expr) for c in calls_in(child)]


def names_used(expr: ast.Expr) -> list[ast.Name]:
    if isinstance(expr, ast.Name):
        return [expr]
    return [n for child in ast.children(expr) for n in names_used(child)]


def _references(stmt: Definition | ast.Expr) -> list[tuple[str, Span]]:
    """Every name a statement uses, as a value or as a called definition, in source order."""
    found = []
    for expr in statement_exprs(stmt):
        found += [(n.id, n.span) for n in names_used(expr)] + [(c.func, c.func_span) for c in calls_in(expr)]
    return sorted(found, key=lambda item: item[1].start_pos)


def train_names(program: ast.Program) -> set[str]:
    """Names the train(...) clause uses, directly or through definitions: their values are free text."""
    owners = {name: s for s in program.statements if isinstance(s, ast.DEFINITIONS) for name in bound_names(s)}
    todo = [name for s in program.statements if isinstance(s, ast.Call) and s.func == "train"
            for name, _ in _references(s)]
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in owners and name not in found:
            found.add(name)
            todo += [n for n, _ in _references(owners[name])]
    return found


def _chain(start: str, target: str, owners: dict[str, Definition]) -> list[str] | None:
    """A path of uses from `target` back to `start` (a definition that reaches itself), if there is one."""
    paths, seen = [[target]], {target}
    while paths:
        path = paths.pop(0)
        for name, _ in _references(owners[path[-1]]):
            if name == start:
                return [start, *path, start]
            if name in owners and name not in seen:
                seen.add(name)
                paths.append([*path, name])
    return None


def _unknown_name(name: str, span: Span, candidates: list[str]) -> ArchlangError:
    if name.lower() in ("nan", "inf", "infinity"):
        hint = "numbers must be finite"
    elif name == "train":
        hint = "train(...) is a clause on its own line, not a layer"
    elif name in PYTHON_NAMES:
        hint = PYTHON_HINT
    else:
        hint = did_you_mean(name, [*candidates, *known_names(), "true", "false"]) or \
            f"define it first with `let {shorten(name)} = ...`"
    return ArchlangError(f"unknown name '{shorten(name)}'", span=span, hint=hint)


def _check_params(d: ast.Def, owners: dict[str, Definition]) -> None:
    seen: set[str] = set()
    defaulted: ast.Param | None = None
    for p in d.params:
        if p.name in seen:
            raise ArchlangError(f"{d.name}() has two parameters named '{p.name}'", span=p.span,
                                hint="give each parameter its own name")
        if model_for(p.name) is not None or p.name in ("train", "true", "false"):
            raise ArchlangError(f"'{p.name}' is a built-in name and cannot be a parameter", span=p.span,
                                hint=f"call it e.g. my_{p.name}")
        if p.name in owners:
            raise ArchlangError(f"parameter '{p.name}' of {d.name}() shadows the definition on line "
                                f"{owners[p.name].span.line}", span=p.span, hint="rename the parameter")
        if p.default is None and defaulted is not None:
            raise ArchlangError(f"parameter '{p.name}' without a default follows '{defaulted.name}', which has one",
                                span=p.span, hint="put the parameters without defaults first")
        defaulted = p if p.default is not None else defaulted
        seen.add(p.name)


def bind(call: ast.Call, d: ast.Def) -> dict[str, ast.Expr]:
    """The value of each parameter of `d` in `call` (given, else its default), with a family's errors."""
    positional = call.positional
    if any(a.name is None for a in call.args[len(positional):]):
        late = next(a for a in call.args[len(positional):] if a.name is None)
        raise ArchlangError("positional argument after a keyword argument", span=late.span,
                            hint="put positional arguments first, or name this one")
    names = [p.name for p in d.params]
    if len(positional) > len(names):
        takes = f"takes {len(names)} positional argument{'s' if len(names) != 1 else ''}" if names else \
            "takes no arguments"
        raise ArchlangError(f"{d.name}() {takes}, got {len(positional)}", span=positional[len(names)].span,
                            hint=f"signature: {d.signature()}")
    values = {name: a.value for name, a in zip(names, positional)}
    for a in call.keywords:
        assert a.name is not None
        if a.name not in names:
            raise ArchlangError(f"{d.name}() has no argument '{shorten(a.name)}'", span=a.name_span or a.span,
                                hint=did_you_mean(a.name, names) or f"signature: {d.signature()}")
        if a.name in values:
            how = "both by position and by name" if a.name in names[: len(positional)] else "twice"
            raise ArchlangError(f"argument '{a.name}' of {d.name}() is given {how}", span=a.name_span or a.span)
        values[a.name] = a.value
    for p in d.params:
        if p.name not in values:
            if p.default is None:
                raise ArchlangError(f"{d.name}() is missing the argument '{p.name}'", span=call.func_span,
                                    hint=f"signature: {d.signature()}")
            values[p.name] = p.default
    return values


def check_tuple(names: tuple[str, ...], value: ast.Expr) -> None:
    """`value` is a tuple of one item per name (a tuple let's value, or one item of its set)."""
    shown = f"({', '.join(names)})"
    if not isinstance(value, ast.TupleV):
        raise ArchlangError(f"{shorten(shown)} takes a tuple of {len(names)} values, like "
                            f"({', '.join(str(i + 1) for i in range(len(names)))})", span=value.span,
                            hint=PAIRED_HINT)
    if len(value.items) != len(names):
        raise ArchlangError(f"this tuple has {len(value.items)} values; {shorten(shown)} takes {len(names)}",
                            span=value.span, hint="every tuple of a paired sweep gives one value per name")


def _check_static_tuples(stmt: ast.TupleLet) -> None:
    if isinstance(stmt.value, ast.SetV):
        for item in stmt.value.items:
            check_tuple(stmt.names, item)
    elif isinstance(stmt.value, ast.TupleV):
        check_tuple(stmt.names, stmt.value)


@dataclass(frozen=True)
class _Measure:
    """An expression once every definition in it is inlined: values, bracket depth, and how many
    times the parameters of the definition being measured occur in it (0 outside a definition)."""

    size: int
    depth: int
    uses: int = 0


class _Sizes:
    """Upper bounds on the size of expressions as if every definition in them were inlined."""

    def __init__(self) -> None:
        self.names: dict[str, _Measure] = {}
        # A definition's body (parameters as one value each, their inlined uses) and its defaults' sizes.
        self.bodies: dict[str, tuple[_Measure, _Measure]] = {}

    def measure(self, expr: ast.Expr, params: frozenset[str] = frozenset()) -> _Measure:
        if isinstance(expr, ast.Name):
            return _Measure(1, 0, 1) if expr.id in params else self.names.get(expr.id, _Measure(1, 0))
        children = [self.measure(c, params) for c in ast.children(expr)]
        size, uses = sum(m.size for m in children), sum(m.uses for m in children)
        depth = max((m.depth for m in children), default=0)
        if isinstance(expr, ast.Call) and expr.func in self.bodies:
            # Every use of a parameter in the body may receive any argument (or default): a bound, not a count.
            body, defaults = self.bodies[expr.func]
            return _Measure(body.size + body.uses * (size + defaults.size), body.depth + max(depth, defaults.depth),
                            body.uses * (uses + defaults.uses))
        if not children:
            return _Measure(1, 1 if isinstance(expr, (ast.Call, ast.ListV)) else 0)
        return _Measure(1 + size, 1 + depth, uses)

    def add(self, stmt: Definition) -> _Measure:
        if isinstance(stmt, ast.Def):
            body = self.measure(stmt.value, frozenset(p.name for p in stmt.params))
            given = [self.measure(p.default) for p in stmt.params if p.default is not None]
            defaults = _Measure(sum(m.size for m in given), max((m.depth for m in given), default=0))
            self.bodies[stmt.name] = (body, defaults)
            bare = self.measure(ast.Call(stmt.name, (), stmt.span, stmt.name_span))
        else:
            bare = self.measure(stmt.value)
        for name in bound_names(stmt):
            self.names[name] = bare
        return bare


def _check_size(stmt: Definition | ast.Expr, measured: _Measure) -> None:
    size, depth = measured.size, measured.depth
    if size > MAX_INLINED or depth > MAX_NESTING:
        what = f"'{bound_names(stmt)[0]}'" if isinstance(stmt, ast.DEFINITIONS) else "the network"
        problem = (f"grows to more than {MAX_INLINED:,} values" if size > MAX_INLINED
                   else f"nests brackets more than {MAX_NESTING} deep")
        raise ArchlangError(f"{what} {problem} once its `let` names are inlined",
                            span=_name_spans(stmt)[0] if isinstance(stmt, ast.DEFINITIONS) else stmt.span,
                            hint="use repeat(n, block) instead of repeating a definition")


def _check_reference(name: str, span: Span, stmt: Definition | ast.Expr, defined: dict[str, Definition],
                     owners: dict[str, Definition]) -> None:
    """A name used before its definition, or through a chain of definitions that leads back to this one."""
    own = bound_names(stmt) if isinstance(stmt, ast.DEFINITIONS) else ()
    if name in own:
        raise ArchlangError(f"'{name}' is defined in terms of itself", span=span,
                            hint="a definition can only use names defined before it")
    if name in defined or name not in owners:
        return
    chain = next((c for start in own if (c := _chain(start, name, owners))), None)
    if chain:
        raise ArchlangError(f"'{chain[0]}' is defined in terms of itself: {shorten(' -> '.join(chain), 120)}",
                            span=span, hint="definitions cannot be recursive; use names defined before")
    raise ArchlangError(f"'{name}' is used before its definition on line {owners[name].span.line}",
                        span=span, hint="move the `let` above its first use")


def _check_uses(stmt: Definition | ast.Expr, defined: dict[str, Definition], owners: dict[str, Definition],
                free: set[str]) -> None:
    params = {p.name for p in stmt.params} if isinstance(stmt, ast.Def) else set()
    is_train = isinstance(stmt, ast.Call) and stmt.func == "train"
    is_free = isinstance(stmt, ast.DEFINITIONS) and bool(set(bound_names(stmt)) & free)
    for name, span in _references(stmt):
        if name in params:
            continue
        _check_reference(name, span, stmt, defined, owners)
    for expr in statement_exprs(stmt):
        in_body = isinstance(stmt, ast.DEFINITIONS) and expr is stmt.value
        for n in names_used(expr):
            if n.id in params and not in_body:
                raise ArchlangError(f"a default cannot use the parameter '{n.id}'", span=n.span,
                                    hint="a default is a value, or a name defined before the definition")
            _check_name(n, defined, params, is_train or is_free)
        for call in calls_in(expr):
            target = defined.get(call.func)
            if isinstance(target, ast.Def):
                bind(call, target)
            elif call.func in params or target is not None:
                what = "a parameter" if call.func in params else "a `let` name"
                raise ArchlangError(f"'{call.func}' is {what}, not a layer; it cannot be called",
                                    span=call.func_span, hint=f"use it as a value: {call.func}")


def _check_name(n: ast.Name, defined: dict[str, Definition], params: set[str], free: bool) -> None:
    target = defined.get(n.id)
    if isinstance(target, ast.Def) and any(p.default is None for p in target.params):
        raise ArchlangError(f"'{n.id}' needs arguments here", span=n.span, hint=f"signature: {target.signature()}")
    known = n.id in defined or n.id in known_names() or n.id in params
    if not known and not free:
        raise _unknown_name(n.id, n.span, [*defined, *params])


def _register(stmt: Definition, defined: dict[str, Definition]) -> None:
    for name, span in zip(bound_names(stmt), _name_spans(stmt)):
        if name in defined:
            raise ArchlangError(f"'{name}' is already defined on line {defined[name].span.line}",
                                span=span, hint="pick another name")
        if model_for(name) is not None or name in ("train", "true", "false"):
            raise ArchlangError(f"'{name}' is a built-in name and cannot be redefined",
                                span=span, hint=f"call it e.g. my_{name}")
        defined[name] = stmt


def check_definitions(program: ast.Program) -> None:
    """Refuse redefinitions, use before definition, recursion, unknown names and bad calls, at the name."""
    defined: dict[str, Definition] = {}
    owners: dict[str, Definition] = {}
    for s in program.statements:
        if isinstance(s, ast.DEFINITIONS):
            for name in bound_names(s):
                owners.setdefault(name, s)
    free = train_names(program)
    sizes = _Sizes()
    for stmt in program.statements:
        if isinstance(stmt, ast.Def):
            _check_params(stmt, owners)
        if isinstance(stmt, ast.TupleLet):
            _check_static_tuples(stmt)
        _check_uses(stmt, defined, owners, free)
        if isinstance(stmt, ast.DEFINITIONS):
            _check_size(stmt, sizes.add(stmt))
            _register(stmt, defined)
        else:
            _check_size(stmt, sizes.measure(stmt))
