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


Expr = Int | Float | Bool | Str | Name | ListV | SetV | Call


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Program:
    """A parsed file: definitions and top-level expressions, in source order."""

    statements: tuple[Let | Expr, ...] = field(default_factory=tuple)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of an expression, in source order."""
    if isinstance(expr, (ListV, SetV)):
        return expr.items
    if isinstance(expr, Call):
        return tuple(a.value for a in expr.args)
    return ()
