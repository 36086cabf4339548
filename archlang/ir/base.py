"""What every IR node shares: strict validation and the source span it came from."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

from archlang.errors import Span


class FieldProblem(Exception):
    """Raised by validators for a problem with one argument; the lowerer points at its source.

    Deliberately not a ValueError, so pydantic lets it through unwrapped with its hint intact.
    """

    def __init__(self, field: str | None, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.hint = hint


class IRNode(BaseModel):
    """Base of all IR nodes: unknown fields are refused, values are checked on assignment."""

    # strict: 3.5 is not silently an int, 1 is not a bool; ints are still accepted as floats.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)

    _span: Span | None = PrivateAttr(default=None)
    _arg_spans: dict[str, Span] = PrivateAttr(default_factory=dict)

    # Positional arguments fill fields in this order (declaration order when None).
    positional: ClassVar[tuple[str, ...] | None] = None
    # A field that collects all positional arguments, as in seq(a, b, c).
    variadic: ClassVar[str | None] = None
    # One line for `docs` and error hints: where the node comes from.
    doc: ClassVar[str] = ""

    @classmethod
    def arg_names(cls) -> list[str]:
        return [name for name in cls.model_fields if name != "kind"]

    @classmethod
    def positional_names(cls) -> list[str]:
        return list(cls.positional) if cls.positional is not None else cls.arg_names()

    def at(self, span: Span | None) -> IRNode:
        """Remember where this node was written (or, when expanded, which call produced it)."""
        self._span = span
        return self

    @property
    def span(self) -> Span | None:
        return self._span

    def arg_span(self, name: str) -> Span | None:
        """Where argument `name` was written, else where the node itself was."""
        return self._arg_spans.get(name, self._span)
