"""The one error type users see: a message pinned to a place in their source.

Every user-caused failure (syntax, unknown name, bad value, shape mismatch, missing
data, bad checkpoint) is raised as an ArchlangError; the CLI prints `render()` and
exits with status 2, so no traceback ever reaches the user.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Span:
    """A range in a source text, 1-based lines and columns like editors show."""

    line: int
    column: int
    end_line: int
    end_column: int
    start_pos: int
    end_pos: int


@dataclass(frozen=True)
class Source:
    """The text of a spec and the name it is reported under (a path or `<inline>`)."""

    text: str
    filename: str = "<inline>"

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""


# Long lines would make the caret unreadable: show a window around the column.
_MAX_SHOWN = 100


def _caret_excerpt(source: Source, span: Span) -> str:
    text = source.line_text(span.line).replace("\t", " ")
    start = span.column - 1
    width = max(1, (span.end_column - span.column) if span.end_line == span.line else len(text) - start)
    offset = 0
    if len(text) > _MAX_SHOWN:
        offset = max(0, min(start - _MAX_SHOWN // 2, len(text) - _MAX_SHOWN))
        text = ("..." if offset else "") + text[offset : offset + _MAX_SHOWN] + "..."
        start = start - offset + (3 if offset else 0)
        width = min(width, _MAX_SHOWN - (start - 3 if offset else start))
    gutter = f"{span.line:>4} | "
    return f"{gutter}{text}\n{' ' * len(gutter)}{' ' * start}{'^' * max(1, width)}"


class ArchlangError(Exception):
    """A user error, rendered as `file:line:col: error: message`, the source line, a caret, a hint."""

    def __init__(
        self,
        message: str,
        *,
        source: Source | None = None,
        span: Span | None = None,
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.span = span
        self.hint = hint
        self.path = path

    def with_location(self, source: Source, span: Span | None) -> "ArchlangError":
        """Attach a place to an error raised by code that does not know the source."""
        if self.source is None:
            self.source = source
        if self.span is None:
            self.span = span
        return self

    def render(self) -> str:
        if self.source is not None and self.span is not None:
            where = f"{self.source.filename}:{self.span.line}:{self.span.column}"
            body = f"{where}: error: {self.message}\n{_caret_excerpt(self.source, self.span)}"
        elif self.path is not None:
            body = f"{self.path}: error: {self.message}"
        elif self.source is not None:
            body = f"{self.source.filename}:1:1: error: {self.message}"
        else:
            body = f"error: {self.message}"
        if self.hint:
            body += f"\nhint: {self.hint}"
        return body

    def __str__(self) -> str:
        return self.render()


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            matches = [lowered[name.lower()]]
    return f"did you mean '{matches[0]}'?" if matches else None
