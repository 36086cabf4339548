"""The one error type users see: a message pinned to a place in their source.

Every user-caused failure (syntax, unknown name, bad value, shape mismatch, missing
data, bad checkpoint) is raised as an ArchlangError; the CLI prints `render()` and
exits with status 2, so no traceback ever reaches the user.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


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
        """Line `line` (1-based) as the parser counts lines: only '\\n' ends a line."""
        if line < 1:
            return ""
        start = 0
        for _ in range(line - 1):
            start = self.text.find("\n", start) + 1
            if start == 0:
                return ""
        end = self.text.find("\n", start)
        text = self.text[start:] if end < 0 else self.text[start:end]
        return text.removesuffix("\r")


# Long lines would make the caret unreadable: show a window around the column.
_MAX_SHOWN = 100


def _visible(ch: str) -> str:
    """One printable character per source character, so the caret stays under its column.

    Tabs become spaces; control, format and line-separator characters (NUL, ESC, U+2028 ...)
    would garble the terminal or break the line, so they are shown as U+FFFD.
    """
    if ch == "\t":
        return " "
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs"):
        return "\ufffd"
    return ch


def _columns(text: str) -> int:
    """How many terminal columns `text` takes (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _caret_excerpt(source: Source, span: Span) -> str:
    line = source.line_text(span.line)
    start = max(0, span.column - 1)
    if span.end_line == span.line:
        width = span.end_column - span.column
    else:
        width = len(line) - start
    width = max(1, width)
    offset, end = 0, len(line)
    if len(line) > _MAX_SHOWN:
        offset = max(0, min(start - _MAX_SHOWN // 2, len(line) - _MAX_SHOWN))
        end = offset + _MAX_SHOWN
    shown = "".join(_visible(ch) for ch in line[offset:end])
    before = "".join(_visible(ch) for ch in line[offset:start])
    prefix = "..." if offset else ""
    suffix = "..." if end < len(line) else ""
    # The caret may point just past the end of the line (a missing token), never past the window.
    width = max(1, min(width, end - start if start < end else 1))
    gutter = f"{span.line:>4} | "
    caret_at = len(gutter) + len(prefix) + _columns(before)
    return f"{gutter}{prefix}{shown}{suffix}\n{' ' * caret_at}{'^' * width}"


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

    def with_location(self, source: Source, span: Span | None) -> ArchlangError:
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


def shorten(text: str, limit: int = 40) -> str:
    """A user-written name or value cut to fit in a one-line message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    if len(name) > 64:
        return None
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            matches = [lowered[name.lower()]]
    return f"did you mean '{matches[0]}'?" if matches else None
