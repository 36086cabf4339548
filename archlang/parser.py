"""Text -> parse tree (Lark, with positions) -> AST, and syntax errors users can read."""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from archlang import arith, ast
from archlang.arith import MAX_INT_DIGITS
from archlang.errors import ArchlangError, Source, Span, shorten

# Read through importlib.resources so the grammar ships inside the wheel and loads from a zip too.
GRAMMAR = resources.files("archlang") / "grammars" / "archlang.lark"

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

# Guards against specs that would exhaust the parser's stack or the user's patience.
MAX_SPEC_BYTES = 1_000_000
MAX_NESTING = 64
# Hand-written specs of the papers' networks hold a few hundred tokens; parsing costs ~50us a token.
MAX_TOKENS = 10_000


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def span_of(meta_or_token: object) -> Span:
    m = meta_or_token
    return Span(m.line, m.column, m.end_line, m.end_column, m.start_pos, m.end_pos)  # type: ignore[attr-defined]


_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


def _unquote(token: Token) -> str:
    """The value of a string literal; only the escapes \\\\ \\" \\' \\n \\t exist (nothing is evaluated)."""
    body = str(token)[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                column = token.column + 1 + i  # type: ignore[operator]
                pos = (token.start_pos or 0) + 1 + i
                shown = "'\\" + nxt + "'" if nxt.isprintable() else repr("\\" + nxt)
                raise ArchlangError(f"unknown escape {shown} in a string",
                                    span=Span(token.line, column, token.line, column + 2, pos, pos + 2),  # type: ignore[arg-type]
                                    hint="strings know only the escapes \\\\, \\\", \\', \\n and \\t")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _int_value(token: Token) -> int:
    digits = str(token).lstrip("+-")
    if len(digits) > MAX_INT_DIGITS:
        raise ArchlangError(f"an integer of {len(digits)} digits is too large for any argument",
                            span=span_of(token))
    return int(str(token))


def _float_value(token: Token) -> float:
    value = float(str(token))
    if not math.isfinite(value):
        raise ArchlangError(f"the number {shorten(str(token))} is too large", span=span_of(token),
                            hint="numbers must be finite")
    return value


@v_args(meta=True)
class _ToAst(Transformer):
    def start(self, meta, items):
        return ast.Program(tuple(items))

    def let_stmt(self, meta, items):
        name, value = items
        return ast.Let(str(name), value, span_of(meta), span_of(name))

    def def_stmt(self, meta, items):
        name, *params, value = items
        return ast.Def(str(name), tuple(p for p in params if p is not None), value, span_of(meta), span_of(name))

    def param(self, meta, items):
        name, *default = items
        return ast.Param(str(name), default[0] if default else None, span_of(name))

    def tuple_let(self, meta, items):
        *names, value = items
        return ast.TupleLet(tuple(str(n) for n in names), value, span_of(meta), tuple(span_of(n) for n in names))

    def binop(self, meta, items):
        left, op, right = items
        return ast.BinOp(str(op), left, right, span_of(meta), span_of(op))

    def unary(self, meta, items):
        op, operand = items
        unary = ast.Unary(str(op), operand, span_of(meta), span_of(op))
        # A signed literal is a number, as it was before arithmetic existed: -2.5 is a Float.
        return arith.fold(unary) if isinstance(operand, (ast.Int, ast.Float)) else unary

    def tuple(self, meta, items):
        return ast.TupleV(tuple(items), span_of(meta))

    def call(self, meta, items):
        func, *args = items
        wrapped = tuple(a if isinstance(a, ast.Arg) else ast.Arg(None, a, a.span) for a in args if a is not None)
        return ast.Call(str(func), wrapped, span_of(meta), span_of(func))

    def kwarg(self, meta, items):
        name, value = items
        return ast.Arg(str(name), value, span_of(meta), span_of(name))

    def list(self, meta, items):
        return ast.ListV(tuple(i for i in items if i is not None), span_of(meta))

    def set(self, meta, items):
        return ast.SetV(tuple(items), span_of(meta))

    def int(self, meta, items):
        return ast.Int(_int_value(items[0]), span_of(items[0]))

    def float(self, meta, items):
        return ast.Float(_float_value(items[0]), span_of(items[0]))

    def true(self, meta, items):
        return ast.Bool(True, span_of(meta))

    def false(self, meta, items):
        return ast.Bool(False, span_of(meta))

    def string(self, meta, items):
        return ast.Str(_unquote(items[0]), span_of(items[0]))

    def name(self, meta, items):
        return ast.Name(str(items[0]), span_of(items[0]))


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


def _check_limits(source: Source) -> None:
    """Refuse specs that would exhaust the parser's stack or the user's patience, before parsing."""
    text = source.text
    if len(text) > MAX_SPEC_BYTES:
        raise ArchlangError(f"spec is {len(text):,} characters long, more than the {MAX_SPEC_BYTES:,} allowed",
                            source=source, span=_point_at(text, MAX_SPEC_BYTES),
                            hint="a spec is a few lines of text; is this the right file?")
    depth = tokens = 0
    operators = [0]  # operators in the expression being written, per open bracket
    for m in _SCAN.finditer(text):
        ch = m.group()
        if ch[0] == "#":
            continue
        tokens += 1
        if tokens > MAX_TOKENS:
            raise ArchlangError(f"the spec has more than {MAX_TOKENS:,} tokens", source=source,
                                span=_point_at(text, m.start(), len(ch)),
                                hint="write repeated layers as repeat(n, block) and name parts with `let`")
        if ch in _CLOSER:
            depth += 1
            operators.append(0)
            if depth > MAX_NESTING:
                raise ArchlangError(f"brackets nested more than {MAX_NESTING} deep", source=source,
                                    span=_point_at(text, m.start()),
                                    hint="use `let` definitions or repeat(n, block) instead of deep nesting")
        elif ch in _OPENER:
            depth = max(0, depth - 1)
            operators = operators[:-1] or [0]
        elif ch in (",", "="):
            operators[-1] = 0
        else:
            _check_operators(source, m, operators, depth)


# An operator inside a word-like match of _SCAN (`1+1`, `-3`), not the sign of an exponent (`1e-3`).
_OPERATOR = re.compile(r"(?<![eE])[+-]|(?<=[eE])[+-](?![0-9])|[*/%]")


def _check_operators(source: Source, m: re.Match[str], operators: list[int], depth: int) -> None:
    """Each operator nests its operands one level deeper in the tree: bound operators and brackets together."""
    for op in _OPERATOR.finditer(m.group()):
        operators[-1] += 1
        if depth + sum(operators) > MAX_NESTING:
            raise ArchlangError(f"an expression nests more than {MAX_NESTING} deep (operators and brackets)",
                                source=source, span=_point_at(source.text, m.start() + op.start()),
                                hint="name parts of it with `let`")


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
        if prev == ",":
            hint = "two commas in a row: a value is missing between them"
        elif prev == "=":
            hint = "a value is missing after '='"
        elif prev in ("(", "[", "{"):
            hint = "a value is missing before this ','"
    elif kind == "EQUAL":
        if prev == "=":
            hint = "one '=' is enough: name=value"
        elif not stack:
            hint = "definitions are written `let name = value`"
        elif stack[-1][0] != "(":
            hint = "lists and sets hold plain values, not name=value pairs"
        elif not _follows_name(text, stack[-1][1]):
            hint = f"the '(' at {_where(text, stack[-1][1])} is still open; close it with ')' first"
        else:
            hint = "a keyword argument needs a plain name before '='"
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


def parse(source: Source) -> ast.Program:
    """Parse a spec into its AST; any syntax problem becomes an ArchlangError."""
    _check_limits(source)
    try:
        tree = _parser().parse(source.text)
    except UnexpectedInput as err:
        raise _syntax_error(source, err) from None
    try:
        return _ToAst().transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ArchlangError):
            raise err.orig_exc.with_location(source, err.orig_exc.span) from None
        meta = getattr(err.obj, "meta", err.obj)
        span = span_of(meta) if getattr(meta, "line", None) is not None else None
        raise ArchlangError(f"bad literal: {err.orig_exc}", source=source, span=span) from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte, ...
        return False


def read_source(spec: str) -> Source:
    """A spec given on the command line: a path to a .arch file, or the text itself.

    Only this path is ever opened; nothing inside a spec (strings, names) is treated as a path.
    """
    if not spec.strip():
        return Source(spec, "<inline>")
    path = Path(spec)
    if not _exists(path):
        from archlang.catalog import resolve_name  # a shipped spec's name, as `wrn-28-10`

        shipped = resolve_name(spec)
        if shipped is not None:
            return shipped
    looks_like_path = spec.endswith(".arch") or ("(" not in spec and "/" in spec)
    if looks_like_path or (len(spec) < 4096 and "\n" not in spec and "(" not in spec and _exists(path)):
        try:
            if path.is_dir():
                raise ArchlangError("is a directory, not a spec file", path=spec,
                                    hint="give a path to a .arch file or the spec text itself")
            if not path.is_file():
                raise ArchlangError("no such spec file", path=spec,
                                    hint="give a path to a .arch file or the spec text itself, "
                                         "e.g. 'wrn(depth=28, k=10)'")
            size = path.stat().st_size
            if size > 4 * MAX_SPEC_BYTES:
                raise ArchlangError(f"the spec file is {size:,} bytes, more than a spec can be", path=spec,
                                    hint="a spec is a few lines of text; is this the right file?")
            data = path.read_bytes()
        except (OSError, ValueError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise ArchlangError(f"cannot read the spec file: {reason}", path=spec) from None
        if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark some editors write; not part of the text
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line_start = data.rfind(b"\n", 0, err.start) + 1
            line = data.count(b"\n", 0, err.start) + 1
            col = len(data[line_start:err.start].decode("utf-8", errors="replace")) + 1
            safe = data.decode("utf-8", errors="replace")
            pos = len(data[: err.start].decode("utf-8", errors="replace"))
            raise ArchlangError(f"spec is not valid UTF-8 (byte 0x{data[err.start]:02x})",
                                source=Source(safe, spec), span=Span(line, col, line, col + 1, pos, pos + 1),
                                hint="save the file as UTF-8 text") from None
        return Source(text, spec)
    return Source(spec, "<inline>")
