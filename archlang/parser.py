"""Text -> parse tree (Lark, with positions) -> AST, and syntax errors users can read."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from archlang import arith, ast
from archlang.arith import MAX_INT_DIGITS
from archlang.errors import ArchlangError, Source, Span, shorten
from archlang.syntax_errors import (  # noqa: F401 (end_span, _point_at are used by other stages)
    _CLOSER,
    _OPENER,
    _SCAN,
    _before,
    _line_col,
    _open_brackets,
    _point,
    _point_at,
    _syntax_error,
    _where,
    end_span,
)

# Read through importlib.resources so the grammar ships inside the wheel and loads from a zip too.
GRAMMAR = resources.files("archlang") / "grammars" / "archlang.lark"

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
