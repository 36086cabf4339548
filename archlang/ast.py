"""The syntax tree of a spec: plain values and calls, each with the span it came from.

This is what the parser produces and what sweeps and `let` substitution work on; the
validated, typed form of a network is the IR (archlang/ir), built from these nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archlang.errors import Span


@dataclass(frozen=True)
class Int:
    value: int
    span: Span


@dataclass(frozen=True)
class Float:
    value: float
    span: Span
    # True for the result of '/': an int field refusing it hints at '//'.
    quotient: bool = False


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True)
class Name:
    """A bare identifier: a `let` name, a node without arguments (`relu`) or a symbol (`cifar`)."""

    id: str
    span: Span


@dataclass(frozen=True)
class ListV:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class SetV:
    """`{a, b, c}`: alternatives; a spec holding one is a sweep."""

    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class TupleV:
    """`(a, b)`: the values a tuple let binds together; on its own it is not a value."""

    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class BinOp:
    """`left op right` with op one of + - * / // %; evaluated once the names in it are values."""

    op: str
    left: Expr
    right: Expr
    span: Span
    op_span: Span


@dataclass(frozen=True)
class Unary:
    """`-x` or `+x`."""

    op: str
    operand: Expr
    span: Span
    op_span: Span


@dataclass(frozen=True)
class Arg:
    """One argument of a call; `name` is None for a positional argument."""

    name: str | None
    value: Expr
    span: Span
    name_span: Span | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Arg, ...]
    span: Span
    func_span: Span

    @property
    def positional(self) -> list[Arg]:
        return [a for a in self.args if a.name is None]

    @property
    def keywords(self) -> list[Arg]:
        return [a for a in self.args if a.name is not None]


Expr = Int | Float | Bool | Str | Name | ListV | SetV | TupleV | BinOp | Unary | Call


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Param:
    """A parameter of a definition; `default` None makes it required."""

    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class Def:
    """`let name(params) = value`: a parameterised definition, inlined at every call."""

    name: str
    params: tuple[Param, ...]
    value: Expr
    span: Span
    name_span: Span

    def signature(self) -> str:
        parts = [p.name if p.default is None else f"{p.name}={canonical(p.default)}" for p in self.params]
        return f"{self.name}({', '.join(parts)})"


@dataclass(frozen=True)
class TupleLet:
    """`let (a, b) = value`: binds each name to one item of a tuple (of a set of tuples: a paired sweep)."""

    names: tuple[str, ...]
    value: Expr
    span: Span
    name_spans: tuple[Span, ...]


# The statements that bind names (every one has `.value`).
DEFINITIONS = (Let, Def, TupleLet)


@dataclass(frozen=True)
class Program:
    """A parsed file: definitions and top-level expressions, in source order."""

    statements: tuple[Let | Def | TupleLet | Expr, ...] = field(default_factory=tuple)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of an expression, in source order."""
    if isinstance(expr, (ListV, SetV, TupleV)):
        return expr.items
    if isinstance(expr, BinOp):
        return (expr.left, expr.right)
    if isinstance(expr, Unary):
        return (expr.operand,)
    if isinstance(expr, Call):
        return tuple(a.value for a in expr.args)
    return ()


def canonical(expr: Expr) -> str:
    """The spec text of an expression, one normal spelling: what `params --json` and run folders record."""
    if isinstance(expr, Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, Str):
        escaped = expr.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return '"' + escaped + '"'
    if isinstance(expr, (Int, Float)):
        return repr(expr.value)
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, ListV):
        return "[" + ", ".join(canonical(i) for i in expr.items) + "]"
    if isinstance(expr, SetV):
        return "{" + ", ".join(canonical(i) for i in expr.items) + "}"
    if isinstance(expr, TupleV):
        return "(" + ", ".join(canonical(i) for i in expr.items) + ")"
    if isinstance(expr, BinOp):
        return f"({canonical(expr.left)} {expr.op} {canonical(expr.right)})"
    if isinstance(expr, Unary):
        return f"{expr.op}{canonical(expr.operand)}"
    parts = [(f"{a.name}=" if a.name else "") + canonical(a.value) for a in expr.args]
    return f"{expr.func}(" + ", ".join(parts) + ")"
