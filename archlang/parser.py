"""Text -> parse tree (Lark, with positions) -> AST, and syntax errors users can read."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from archlang import ast
from archlang.errors import ArchlangError, Source, Span

GRAMMAR_PATH = Path(__file__).parent / "grammars" / "archlang.lark"

# What each terminal is called in an error message.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "SIGNED_INT_LIT": "an integer",
    "SIGNED_FLOAT_LIT": "a number",
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


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def span_of(meta_or_token: object) -> Span:
    m = meta_or_token
    return Span(m.line, m.column, m.end_line, m.end_column, m.start_pos, m.end_pos)  # type: ignore[attr-defined]


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body.encode("utf-8").decode("unicode_escape") if "\\" in body else body


@v_args(meta=True)
class _ToAst(Transformer):
    def start(self, meta, items):
        return ast.Program(tuple(items))

    def let_stmt(self, meta, items):
        name, value = items
        return ast.Let(str(name), value, span_of(meta), span_of(name))

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
        return ast.Int(int(items[0]), span_of(items[0]))

    def float(self, meta, items):
        return ast.Float(float(items[0]), span_of(items[0]))

    def true(self, meta, items):
        return ast.Bool(True, span_of(meta))

    def false(self, meta, items):
        return ast.Bool(False, span_of(meta))

    def string(self, meta, items):
        return ast.Str(_unquote(str(items[0])), span_of(items[0]))

    def name(self, meta, items):
        return ast.Name(str(items[0]), span_of(items[0]))


def _point(source: Source, line: int, column: int, pos: int, width: int = 1) -> Span:
    return Span(line, column, line, column + width, pos, pos + width)


def _expected_phrase(expected: set[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(e, e) for e in expected if not e.startswith("__")})
    if len(names) > 6:
        return ""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _syntax_error(source: Source, err: UnexpectedInput) -> ArchlangError:
    if isinstance(err, UnexpectedCharacters):
        char = source.text[err.pos_in_stream] if err.pos_in_stream < len(source.text) else ""
        span = _point(source, err.line, err.column, err.pos_in_stream)
        hint = None
        if char == "*" or char in "+-/%^":
            hint = "archlang has no arithmetic: write the value itself (e.g. depth=28)"
        elif char == ":":
            hint = "keyword arguments are written name=value"
        elif char == ";":
            hint = "statements are separated by newlines; no ';' is needed"
        return ArchlangError(f"unexpected character {char!r}", source=source, span=span, hint=hint)
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        lines = source.text.rstrip().splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        pos = len(source.text.rstrip())
        expected = _expected_phrase(set(err.expected))
        hint = f"expected {expected}" if expected else None
        if source.text.count("(") > source.text.count(")"):
            hint = "a '(' is never closed"
        elif source.text.count("[") > source.text.count("]"):
            hint = "a '[' is never closed"
        elif source.text.count("{") > source.text.count("}"):
            hint = "a '{' is never closed"
        return ArchlangError("unexpected end of spec", source=source, span=_point(source, line, col, pos), hint=hint)
    assert isinstance(err, UnexpectedToken)
    tok: Token = err.token
    span = Span(tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1,
                tok.start_pos or 0, tok.end_pos or 0)
    expected = _expected_phrase(set(err.expected))
    hint = f"expected {expected}" if expected else None
    if tok.type == "EQUAL" and "RPAR" in err.expected:
        hint = "a keyword argument needs a plain name before '='"
    elif tok.type == "NAME" and "COMMA" in err.expected:
        hint = "missing ',' between arguments?"
    return ArchlangError(f"unexpected {tok.type and _TERMINAL_NAMES.get(tok.type, repr(str(tok)))} {str(tok)!r}".replace("a name ", "name ").replace("an integer ", "integer "),
                         source=source, span=span, hint=hint)


def _check_nesting(source: Source) -> None:
    depth = 0
    for pos, ch in enumerate(source.text):
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                line = source.text.count("\n", 0, pos) + 1
                col = pos - (source.text.rfind("\n", 0, pos) + 1) + 1
                raise ArchlangError(f"brackets nested more than {MAX_NESTING} deep", source=source,
                                    span=_point(source, line, col, pos),
                                    hint="use `let` definitions or repeat(n, block) instead of deep nesting")
        elif ch in ")]}":
            depth = max(0, depth - 1)


def parse(source: Source) -> ast.Program:
    """Parse a spec into its AST; any syntax problem becomes an ArchlangError."""
    if len(source.text) > MAX_SPEC_BYTES:
        raise ArchlangError(f"spec is {len(source.text)} characters long, more than the {MAX_SPEC_BYTES} allowed",
                            path=source.filename)
    _check_nesting(source)
    try:
        tree = _parser().parse(source.text)
    except UnexpectedInput as err:
        raise _syntax_error(source, err) from None
    try:
        return _ToAst().transform(tree)
    except VisitError as err:
        raise ArchlangError(f"bad literal: {err.orig_exc}", source=source) from None


def read_source(spec: str) -> Source:
    """A spec given on the command line: a path to a .arch file, or the text itself."""
    path = Path(spec)
    looks_like_path = spec.endswith(".arch") or ("(" not in spec and "/" in spec)
    if looks_like_path or (len(spec) < 4096 and "\n" not in spec and "(" not in spec and path.exists()):
        if not path.is_file():
            raise ArchlangError("no such spec file", path=spec,
                                hint="give a path to a .arch file or the spec text itself, e.g. 'wrn(depth=28, k=10)'")
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
            safe = data.decode("utf-8", errors="replace")
            raise ArchlangError(f"spec is not valid UTF-8 (byte 0x{data[err.start]:02x})",
                                source=Source(safe, spec), span=Span(line, col, line, col + 1, err.start, err.start + 1),
                                hint="save the file as UTF-8 text") from None
        return Source(text, spec)
    return Source(spec, "<inline>")
