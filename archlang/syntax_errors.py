"""Syntax errors users can read: Lark's UnexpectedInput -> one ArchlangError with a caret and a hint.

Split from parser.py (text -> parse tree -> AST) so each reads in one sitting; the position and
bracket-scanning helpers live here because the error builders are their main users.
"""

from __future__ import annotations

import re
import unicodedata

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from archlang.errors import ArchlangError, Source, Span, shorten

# What each terminal is called in an error message.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "INT_LIT": "an integer",
    "FLOAT_LIT": "a number",
    "ADD_OP": "an operator",
    "MUL_OP": "an operator",
    "STRING": "a string",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "EQUAL": "'='",
    "LET": "'let'",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "$END": "the end of the spec",
}


def _point(line: int, column: int, pos: int, width: int = 1) -> Span:
    return Span(line, column, line, column + width, pos, pos + width)


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _point_at(text: str, pos: int, width: int = 1) -> Span:
    line, col = _line_col(text, pos)
    return _point(line, col, pos, width)


def end_span(source: Source) -> Span:
    """Where something missing at the end of a spec would go: just after its last non-blank character."""
    return _point_at(source.text, len(source.text.rstrip()))


# Comments and strings (terminated or not) are skipped, so brackets inside them do not count.
_SCAN = re.compile(r"""#[^\n]*|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|[A-Za-z_0-9.+-]+|\S""")
_CLOSER = {"(": ")", "[": "]", "{": "}"}
_OPENER = {v: k for k, v in _CLOSER.items()}


def _open_brackets(text: str, stop: int | None = None) -> list[tuple[str, int]]:
    """The brackets still open at position `stop` (innermost last), with their positions."""
    stack: list[tuple[str, int]] = []
    for m in _SCAN.finditer(text, 0, len(text) if stop is None else stop):
        ch = m.group()
        if ch in _CLOSER:
            stack.append((ch, m.start()))
        elif ch in _OPENER and stack and _CLOSER[stack[-1][0]] == ch:
            stack.pop()
    return stack


def _where(text: str, pos: int) -> str:
    line, col = _line_col(text, pos)
    return f"line {line}, column {col}"


def _before(text: str, pos: int) -> str:
    """The last non-blank character before `pos` ('' at the start)."""
    stripped = text[:pos].rstrip()
    return stripped[-1] if stripped else ""


def _expected_phrase(expected: set[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(e, e) for e in expected if not e.startswith("__")})
    if len(names) > 6:
        return ""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _token_phrase(tok: Token) -> str:
    text = shorten(str(tok))
    kind = {"NAME": "name ", "INT_LIT": "integer ", "FLOAT_LIT": "number "}.get(tok.type)
    if kind:
        return f"{kind}{text!r}"
    if tok.type == "STRING":
        return f"string {text}"
    return repr(text)


_POWER = "there is no power operator: multiply (2*2*2) or write the value itself"


def _character_error(source: Source, err: UnexpectedCharacters) -> ArchlangError:
    text = source.text
    pos = err.pos_in_stream
    char = text[pos] if pos < len(text) else ""
    just_before = text[pos - 1] if pos > 0 else ""
    span = _point(err.line, err.column, pos)
    message, hint = f"unexpected character {char!r}", None
    if char in "\"'":
        message = "unterminated string"
        hint = f"close it with {char} on the same line (a string cannot span lines)"
    elif char == "^":
        hint = _POWER
    elif char == "." and just_before.isdigit():
        hint = "a number has at most one decimal point"
    elif char == "." and (just_before.isalpha() or just_before in "_)]}\"'"):
        hint = "archlang has no modules, attributes or methods: '.' only appears inside numbers"
    elif char == ".":
        hint = "'.' only appears inside numbers, e.g. 0.5"
    elif char == ":":
        hint = "keyword arguments are written name=value"
    elif char == ";":
        hint = "statements are separated by newlines; no ';' is needed"
    elif char in "\u201c\u201d\u2018\u2019":
        hint = "use straight quotes (\" or ') around strings"
    elif char in "\u2212\u2013\u2014":
        hint = "use the ASCII '-' for a minus sign"
    elif char and unicodedata.category(char) == "Cc":
        hint = f"a spec is text; the control character U+{ord(char):04X} suggests a binary file"
    elif char and unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cf"):
        hint = f"U+{ord(char):04X} is an invisible or unusual space; use a plain space or newline"
    elif char.isdigit():
        hint = "numbers are written with the ASCII digits 0-9"
    elif char.isalpha():
        hint = "names are written with ASCII letters, digits and '_'"
    return ArchlangError(message, source=source, span=span, hint=hint)


def _end_error(source: Source, expected: set[str]) -> ArchlangError:
    text = source.text
    pos = len(text.rstrip())
    stack = _open_brackets(text)
    if _before(text, pos) == "=":
        hint: str | None = "a value is missing after '='"
    elif stack:
        opener, at = stack[-1]
        hint = f"the {opener!r} at {_where(text, at)} is never closed"
    else:
        phrase = _expected_phrase(expected)
        hint = f"expected {phrase}" if phrase else None
    return ArchlangError("unexpected end of spec", source=source, span=_point_at(text, pos), hint=hint)


_VALUE_STARTS = {"NAME", "INT_LIT", "FLOAT_LIT", "STRING", "TRUE", "FALSE", "LSQB", "LBRACE"}


def _closer_hint(text: str, start: int, closer: str, stack: list[tuple[str, int]]) -> str | None:
    """Why a ')', ']' or '}' cannot come here."""
    prev = _before(text, start)
    if not stack:
        return f"this {closer!r} has no {_OPENER[closer]!r} to close"
    if _CLOSER[stack[-1][0]] != closer:
        opener, at = stack[-1]
        return f"the {opener!r} at {_where(text, at)} is still open; close it with {_CLOSER[opener]!r} first"
    if prev == "=":
        return "a value is missing after '='"
    if prev == "{":
        return "a set {...} needs at least one value"
    if prev == "(" and closer == ")":
        return "parentheses need a value inside, e.g. (depth - 4) // 6"
    if re.search(r"(?<![A-Za-z_0-9])let\s*\(\s*[A-Za-z_][A-Za-z_0-9]*\s*$", text[:start]):
        return "a tuple let names two or more values; for one, write let name = value"
    return None


def _follows_name(text: str, pos: int) -> bool:
    """Whether the '(' at `pos` opens a call's arguments (rather than parentheses or a tuple)."""
    before = text[:pos].rstrip()
    return bool(before) and (before[-1].isalnum() or before[-1] == "_")


def _comma_hint(prev: str) -> str | None:
    """A ',' where a value should be: what is missing, from the character before it."""
    if prev == ",":
        return "two commas in a row: a value is missing between them"
    if prev == "=":
        return "a value is missing after '='"
    if prev in ("(", "[", "{"):
        return "a value is missing before this ','"
    return None


def _equal_hint(text: str, prev: str, stack: list[tuple[str, int]]) -> str:
    """An '=' the grammar did not expect: a doubled one, a definition without `let`, or a misplaced keyword."""
    if prev == "=":
        return "one '=' is enough: name=value"
    if not stack:
        return "definitions are written `let name = value`"
    if stack[-1][0] != "(":
        return "lists and sets hold plain values, not name=value pairs"
    if not _follows_name(text, stack[-1][1]):
        return f"the '(' at {_where(text, stack[-1][1])} is still open; close it with ')' first"
    return "a keyword argument needs a plain name before '='"


def _token_error(source: Source, err: UnexpectedToken) -> ArchlangError:
    text = source.text
    tok: Token = err.token
    start = tok.start_pos or 0
    span = Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1,  # type: ignore[arg-type]
                start, tok.end_pos or start + 1)
    expected = set(err.expected)
    phrase = _expected_phrase(expected)
    hint = f"expected {phrase}" if phrase else None
    prev = _before(text, start)
    just_before = text[start - 1] if start > 0 else ""
    stack = _open_brackets(text, start)
    kind, value = tok.type, str(tok)
    if kind in ("COMMA", "RPAR", "RSQB", "RBRACE") and prev and prev in "+-*/%":
        op = "//" if text[:start].rstrip().endswith("//") else prev
        hint = f"a value is missing after '{op}'"
    elif kind in ("RPAR", "RSQB", "RBRACE"):
        hint = _closer_hint(text, start, value, stack) or hint
    elif kind == "COMMA":
        hint = _comma_hint(prev) or hint
    elif kind == "EQUAL":
        hint = _equal_hint(text, prev, stack)
    elif kind == "NAME" and re.search(r"(?<![A-Za-z_0-9])let\s*$", text[:start]):
        hint = "`let` definitions go on their own line, before the network"
    elif kind in _VALUE_STARTS and "COMMA" in expected:
        if kind == "NAME" and just_before.isdigit():
            hint = "a number takes no suffix or unit: write the number alone"
        elif kind == "FLOAT_LIT" and value.startswith(".") and just_before.isdigit():
            hint = "a number has at most one decimal point"
        elif stack and stack[-1][0] == "(":
            hint = "missing ',' between arguments?"
        elif stack:
            hint = "missing ',' between items?"
    elif kind == "MUL_OP" and prev == "*" and value == "*":
        hint = _POWER
    elif kind == "MUL_OP":
        hint = f"'{value}' needs a value on each side, e.g. 2{value}k"
    elif kind == "LPAR" and (prev in ("", "=", ",", "(", "[", "{")):
        hint = "parentheses only follow a name, as in conv(16); a list is written [3, 32, 32]"
    elif kind == "LPAR":
        hint = "only a name can be called, e.g. conv(16)"
    elif kind == "LET":
        hint = "`let` definitions go on their own line, before the network"
    elif kind in ("TRUE", "FALSE") and "NAME" in expected:
        hint = f"'{value}' is a reserved word and cannot be a name"
    elif kind == "NAME" and just_before.isdigit() and "NAME" not in expected:
        hint = "a number takes no suffix or unit: write the number alone"
    return ArchlangError(f"unexpected {_token_phrase(tok)}", source=source, span=span, hint=hint)


def _syntax_error(source: Source, err: UnexpectedInput) -> ArchlangError:
    if isinstance(err, UnexpectedCharacters):
        return _character_error(source, err)
    if isinstance(err, UnexpectedEOF):
        return _end_error(source, set(err.expected))
    assert isinstance(err, UnexpectedToken)
    if err.token.type == "$END":
        return _end_error(source, set(err.expected))
    return _token_error(source, err)
