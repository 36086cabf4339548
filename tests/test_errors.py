"""User errors: one message, file:line:column, the source line, a caret under the culprit, a hint."""

from __future__ import annotations

import pytest

import archlang
from archlang.errors import ArchlangError, Source


def _render(text: str, filename: str = "<inline>") -> str:
    with pytest.raises(ArchlangError) as info:
        archlang.compile_spec(Source(text, filename))
    return info.value.render()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("wrn(depth=27, k=10)",
         ("<inline>:1:5: error: depth 27 is not 6N + 4 for a whole number N >= 1\n"
         "   1 | wrn(depth=27, k=10)\n"
         "           ^^^^^^^^\n"
         "hint: nearest valid depth: 22 or 28")),
        ("wrn(depht=28, k=10)",
         ("<inline>:1:5: error: wrn() has no argument 'depht'\n"
         "   1 | wrn(depht=28, k=10)\n"
         "           ^^^^^\n"
         "hint: did you mean 'depth'?")),
        ("wrm(28, 10)",
         ("<inline>:1:1: error: unknown network or layer 'wrm'\n"
         "   1 | wrm(28, 10)\n"
         "       ^^^\n"
         "hint: did you mean 'wrn'?")),
        ("wrn(depth=28, k=0)",
         ("<inline>:1:15: error: k must be > 0, got 0\n"
         "   1 | wrn(depth=28, k=0)\n"
         "                     ^^^")),
    ],
)
def test_exact_messages(text: str, expected: str):
    assert _render(text) == expected


def test_file_name_and_line_of_a_multi_line_spec():
    text = "# header\nlet b = B(3,3)\nwrn(depth=28,\n    k=10, block=b, dropuot=0.3)\n"
    message = _render(text, "specs/x.arch")
    assert message.startswith("specs/x.arch:4:20: error: wrn() has no argument 'dropuot'")
    assert "hint: did you mean 'dropout'?" in message


def test_shape_error_points_at_the_layer_before_any_torch_code():
    message = _render("seq(input(3, 32, 32), conv(16), highway(conv(32)))")
    assert ":1:33: error: a highway layer must keep its input shape (16x32x32)" in message
    assert "^" * len("highway(conv(32))") in message


def test_sweep_refused_by_compile_with_the_set_underlined():
    message = _render("wrn(depth={16, 22}, k=2)")
    assert "sweep of 2 networks" in message and "^^^^^^^^" in message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("wrn(depth=28, k=10", "unexpected end of spec"),
        ("wrn(depth=10**9, k=1)", "there is no power operator"),
        ("wrn(depth=1000000000, k=1)", "depth must be <= 2000"),
        ("mlp(depth=10, block=plian)", "did you mean 'plain'?"),
        ("wrn(depth=28, k=2.5)", "k must be an integer, got 2.5"),
        ("let a = b\nlet b = B(3,3)\nwrn(depth=28, k=1, block=a)", "'b' is used before its definition on line 2"),
        ("let a = gated(a)\nwrn(depth=28, k=1)", "'a' is defined in terms of itself"),
        ("let relu = B(3)\nwrn(depth=28, k=1)", "'relu' is a built-in name"),
        ("", "the spec defines no network"),
        ("wrn(28, 10)\nwrn(16, 4)", "a spec holds one network expression"),
        ("wrn(28, 10, 3, 4)", "wrn() takes 2 positional arguments, got 4"),
        ("wrn(depth=28, 10)", "positional argument after a keyword argument"),
        ("mlp()", "mlp() is missing the argument 'depth'"),
        ("seq(input(3, 32, 32), conv(16), residual(seq(conv(32, stride=2)), shortcut=identity))",
         "identity shortcut needs equal shapes"),
        ("seq(input(3, 8, 8), maxpool(2), maxpool(2), maxpool(2), maxpool(2))", "larger than the 1-pixel input"),
        ("let x = foo(3)\nwrn(16, 1)", "unknown network or layer 'foo'"),
        ("wrn(16, 1, block=gated(B(3,3)), block=B(3))", "given twice"),
        ("dirac(conv(16, bias=true))", "a Dirac conv has no bias"),
        ("wrn(depth=16, k=1, block=B(3, 4))", "kernel size 4 is even"),
        ("gated(residual)", "a network is a family call or a seq(input(...), ...)"),
    ],
)
def test_user_errors_are_archlang_errors(text: str, fragment: str):
    message = _render(text)
    assert fragment in message
    assert message.startswith("<inline>:")
