"""Arithmetic on numbers: `+ - * / // %` and signs, folded into a number once its operands are numbers.

Works on the AST (no IR): sweeps and definitions substitute values first, then each operation is
evaluated here, so an error points at the operator or operand the user wrote. An int expression
stays an int; '/' always gives a float (marked, so a field that needs an int can hint at '//').
"""

from __future__ import annotations

import math

from archlang import ast
from archlang.errors import ArchlangError, shorten

# The same cap the parser puts on literals: no argument of any node needs a larger integer.
MAX_INT_DIGITS = 30

Number = ast.Int | ast.Float


def _describe(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Str):
        return "a string"
    if isinstance(expr, ast.Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, ast.ListV):
        return "a list"
    if isinstance(expr, ast.SetV):
        return "a set"
    if isinstance(expr, ast.TupleV):
        return "a tuple"
    if isinstance(expr, ast.Call):
        return f"{shorten(expr.func)}(...)"
    if isinstance(expr, ast.Name):
        return f"'{shorten(expr.id)}'"
    return "this value"


def _operand(expr: ast.Expr, op: str) -> Number:
    if isinstance(expr, (ast.Int, ast.Float)):
        return expr
    hint = "arithmetic works on numbers only"
    if isinstance(expr, ast.Str):
        hint = "remove the quotes if it is a number"
    elif isinstance(expr, ast.SetV):
        hint = "write the arithmetic inside the set, on each value: {16*2, 16*4}"
    raise ArchlangError(f"'{op}' needs numbers, got {_describe(expr)}", span=expr.span, hint=hint)


def _checked(value: float, expr: ast.BinOp | ast.Unary, quotient: bool) -> Number:
    if isinstance(value, int):
        digits = len(str(abs(value)))
        if digits > MAX_INT_DIGITS:
            raise ArchlangError(f"the result of '{expr.op}' has {digits} digits, too large for any argument",
                                span=expr.op_span)
        return ast.Int(value, expr.span)
    if not math.isfinite(value):
        raise ArchlangError(f"the result of '{expr.op}' is too large", span=expr.op_span,
                            hint="numbers must be finite")
    return ast.Float(value, expr.span, quotient=quotient)


def _apply(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    if op == "//":
        return a // b
    return a % b


def fold(expr: ast.BinOp | ast.Unary) -> Number:
    """The number an operation on number operands gives; its span is the whole operation's."""
    if isinstance(expr, ast.Unary):
        value = _operand(expr.operand, expr.op).value
        return _checked(-value if expr.op == "-" else value, expr, quotient=False)
    left, right = _operand(expr.left, expr.op), _operand(expr.right, expr.op)
    if expr.op in ("/", "//", "%") and right.value == 0:
        raise ArchlangError(f"division by zero in '{expr.op}'", span=expr.op_span)
    try:
        value = _apply(expr.op, left.value, right.value)
    except OverflowError:  # an int too large for a float, e.g. 10**29 / 1e-300 cannot be
        raise ArchlangError(f"the result of '{expr.op}' is too large", span=expr.op_span,
                            hint="numbers must be finite") from None
    quotient = expr.op == "/" or (isinstance(value, float) and (_is_quotient(left) or _is_quotient(right)))
    return _checked(value, expr, quotient)


def _is_quotient(number: Number) -> bool:
    return isinstance(number, ast.Float) and number.quotient


def evaluate(expr: ast.Expr) -> ast.Expr:
    """`expr` with every operation folded into a number, bottom up (other nodes are kept as they are)."""
    if isinstance(expr, ast.BinOp):
        return fold(ast.BinOp(expr.op, evaluate(expr.left), evaluate(expr.right), expr.span, expr.op_span))
    if isinstance(expr, ast.Unary):
        return fold(ast.Unary(expr.op, evaluate(expr.operand), expr.span, expr.op_span))
    return expr
