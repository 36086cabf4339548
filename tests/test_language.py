"""The language front end: parsing, definitions, sweeps, canonical text, and validation into the IR."""

from __future__ import annotations

import pydantic
import pytest

import archlang
from archlang import ast
from archlang.errors import ArchlangError, Source
from archlang.ir import core, families
from archlang.parser import parse
from archlang.sweep import canonical, resolve


def _resolved(text: str):
    source = Source(text)
    return resolve(parse(source), source)


def test_values_of_every_type_parse_with_positions():
    program = parse(Source('f(1, -2.5, 1e-3, true, false, "s", name, [1, 2], g(k=3))'))
    call = program.statements[0]
    assert isinstance(call, ast.Call) and call.func == "f"
    values = [a.value for a in call.args]
    assert [type(v).__name__ for v in values] == ["Int", "Float", "Float", "Bool", "Bool", "Str", "Name", "ListV",
                                                  "Call"]
    assert values[1].value == -2.5 and values[2].value == 1e-3
    assert values[8].args[0].name == "k"
    assert (values[6].span.line, values[6].span.column) == (1, 36)


def test_comments_lets_and_newlines_inside_calls():
    text = "# a comment\nlet b = gated(B(3,3))  # trailing\nwrn(depth=28,\n    k=10, block=b)\n"
    (only,) = _resolved(text)
    assert canonical(only.network) == "wrn(depth=28, k=10, block=gated(B(3, 3)))"


def test_set_in_a_let_is_one_dimension_of_the_sweep():
    text = "let w = {1, 2}\nseq(input(w, 8, 8), conv(w), conv(w))"
    assert len(_resolved(text)) == 2
    assert len(_resolved("wrn(depth={16, 22, 28}, k={1, 2})")) == 6


def test_sweep_params_gives_one_count_per_combination_in_order():
    counts = archlang.sweep_params("wrn(depth={16, 22}, k={1, 2})")
    assert [spec for spec, _ in counts] == ["wrn(depth=16, k=1)", "wrn(depth=16, k=2)",
                                            "wrn(depth=22, k=1)", "wrn(depth=22, k=2)"]
    assert counts[0][1] < counts[1][1] and counts[0][1] < counts[2][1]


def test_positional_and_keyword_arguments_bind_to_the_same_fields():
    a = archlang.compile_spec("wrn(28, 10)")
    b = archlang.compile_spec("wrn(k=10, depth=28)")
    assert a.spec.model_dump() == b.spec.model_dump() and a.total_params == b.total_params


def test_family_validates_into_a_typed_model_and_expands_to_core_nodes():
    compiled = archlang.compile_spec("wrn(depth=16, k=2, block=gated(B(3,3)), dropout=0.3)")
    assert isinstance(compiled.spec, families.Wrn)
    assert isinstance(compiled.spec.block, core.Gated)
    kinds = {item.kind for item in compiled.network.items}
    assert {"input", "conv", "gated", "batchnorm", "linear"} <= kinds
    assert compiled.family == "wrn" and compiled.gated


def test_ir_refuses_unknown_fields_directly():
    with pytest.raises(pydantic.ValidationError, match="colour"):
        core.Conv(out=3, colour="red")


def test_gated_family_equals_gated_block():
    a = archlang.compile_spec("gated(wrn(depth=16, k=2))")
    b = archlang.compile_spec("wrn(depth=16, k=2, block=gated(B(3,3)))")
    assert a.network.model_dump() == b.network.model_dump()


def test_wrn_n_argument_sets_blocks_per_group_for_table_2():
    # WRN Table 2: B(1,3,1) "depth 40" was run with N = (40-4)/6 = 6 blocks of 3 convs per group.
    compiled = archlang.compile_spec("wrn(n=6, k=2, block=B(1,3,1))")
    convs = [layer for layer in compiled.summary.layers if layer.kind == "conv"]
    assert len(convs) == 1 + 3 * 6 * 3


def test_train_clause_is_kept_apart_from_the_network():
    compiled = archlang.compile_spec("mlp(depth=2, width=16)\ntrain(epochs=3, lr=0.01, recipe=gated_mnist)")
    assert compiled.train_args == {"epochs": 3, "lr": 0.01, "recipe": "gated_mnist"}
    assert compiled.train_spans["lr"].line == 2


def test_hand_written_network_needs_an_input():
    with pytest.raises(ArchlangError, match="input shape is unknown"):
        archlang.compile_spec("seq(conv(16), relu)")


def test_count_params_without_building():
    assert archlang.count_params("highway_cnn(mnist, 16)") == 38_986
    assert archlang.count_params("highway_cnn(mnist, 16)", convention="weights") == 38_704


# Arithmetic, parameterised definitions and paired sweeps (issue 11).

def test_grammar_is_lalr_without_conflicts(caplog: pytest.LogCaptureFixture):
    import logging

    from lark import Lark, logger

    from archlang.parser import GRAMMAR

    logger.setLevel(logging.DEBUG)
    logger.addHandler(caplog.handler)
    try:
        Lark(GRAMMAR.read_text(encoding="utf-8"), parser="lalr", debug=True)
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(logging.WARNING)
    assert not [r for r in caplog.records if "conflict" in r.getMessage().lower()]


@pytest.mark.parametrize(("text", "value"), [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 // 2", 3), ("-7 // 2", -4), ("7 % 3", 1), ("2 - 3 - 4", -5),
    ("-(2 + 3)", -5), ("- -3", 3), ("6 / 4", 1.5), ("1.5 * 2", 3.0), ("2 * -3", -6), ("10 - 2 * 3 + 1", 5),
])
def test_arithmetic_has_the_usual_precedence_and_keeps_ints(text: str, value: float):
    (only,) = _resolved(f"f(x={text})")
    result = only.network.args[0].value
    assert result.value == value and type(result.value) is type(value)


def test_arithmetic_uses_let_names_and_sweep_values():
    counts = archlang.sweep_params("let k = {4, 8}\nseq(input(3, 8, 8), conv(16*k, kernel=1), gap, linear(10))")
    assert [spec for spec, _ in counts] == ["seq(input(3, 8, 8), conv(64, kernel=1), gap, linear(10))",
                                            "seq(input(3, 8, 8), conv(128, kernel=1), gap, linear(10))"]
    assert [n for _, n in counts] == [3 * 64 + 64 * 10 + 10, 3 * 128 + 128 * 10 + 10]


def test_true_division_is_refused_where_an_int_is_needed_with_the_hint():
    with pytest.raises(ArchlangError) as info:
        archlang.compile_spec("let d = 56\nwrn(depth=d / 2, k=10)")
    assert info.value.message == "depth must be an integer, got 28.0"
    assert info.value.hint == "'/' always gives a number with a decimal point; '//' divides integers"
    assert archlang.count_params("wrn(depth=56 // 2, k=10)") == archlang.count_params("wrn(28, 10)")


def test_division_by_zero_points_at_the_operator():
    with pytest.raises(ArchlangError) as info:
        archlang.compile_spec("let z = {0}\nwrn(depth=28 % z, k=10)")
    assert info.value.message == "division by zero in '%'"
    assert (info.value.span.line, info.value.span.column, info.value.span.end_column) == (2, 14, 15)


BOTTLENECK = """let bottleneck(w, stride=1, groups=1) = residual(seq(conv(w, kernel=1), bn, relu,
    conv(w, stride=stride), bn, relu, conv(4*w, kernel=1), bn), post=relu)
"""


def test_definition_binds_positional_keyword_and_default_arguments():
    a = archlang.compile_spec(BOTTLENECK + "seq(input(64, 8, 8), bottleneck(16, stride=2), gap, linear(10))")
    b = archlang.compile_spec("seq(input(64, 8, 8), residual(seq(conv(16, kernel=1), bn, relu, conv(16, stride=2), "
                              "bn, relu, conv(64, kernel=1), bn), post=relu), gap, linear(10))")
    assert a.network.model_dump() == b.network.model_dump()
    c = archlang.compile_spec(BOTTLENECK + "seq(input(64, 8, 8), bottleneck(groups=2, w=16), gap, linear(10))")
    assert "conv(16, stride=1)" in c.canonical  # the default, written where the parameter was


def test_each_call_of_a_definition_gets_its_own_weights():
    spec = "let unit(w) = seq(conv(w), bn, relu)\nseq(input(3, 8, 8), unit(8), unit(8), gap, linear(10))"
    model = archlang.compile(spec)
    convs = [m for m in model.modules() if m.__class__.__name__ == "Conv2d"]
    assert len(convs) == 2 and convs[0].weight is not convs[1].weight
    assert archlang.count_params(spec) == 3 * 8 * 9 + 8 * 8 * 9 + 2 * (2 * 8) + 8 * 10 + 10


def test_definition_without_required_parameters_is_used_bare_and_may_nest():
    spec = ("let stem(w=16) = seq(conv(w), bn, relu)\nlet two(w) = seq(stem(w), stem(2*w))\n"
            "seq(input(3, 8, 8), stem, two(8), gap, linear(10))")
    convs = [layer for layer in archlang.compile_spec(spec).summary.layers if layer.kind == "conv"]
    assert [c.out_shape[0] for c in convs] == [16, 8, 16]


def test_paired_sweep_varies_its_names_together():
    counts = archlang.sweep_params("let (d, k) = {(40, 4), (16, 8), (28, 10)}\nwrn(depth=d, k=k)")
    assert [spec for spec, _ in counts] == ["wrn(depth=40, k=4)", "wrn(depth=16, k=8)", "wrn(depth=28, k=10)"]
    assert [n for _, n in counts] == [archlang.count_params(s) for s, _ in counts]
    # With a product set it multiplies like any other set; a single tuple just binds names.
    assert len(archlang.sweep_params("let (d, k) = {(40, 4), (16, 8)}\nwrn(depth=d, k=k, dropout={0, 0.3})")) == 4
    assert archlang.count_params("let (d, k) = (28, 10)\nwrn(d, k)") == 36_479_194


def test_paired_sweep_bound_through_a_name_checks_each_tuple():
    with pytest.raises(ArchlangError) as info:
        archlang.sweep_params("let pairs = {(40, 4), (16, 8, 2)}\nlet (d, k) = pairs\nwrn(depth=d, k=k)")
    assert info.value.message == "this tuple has 3 values; (d, k) takes 2"
    assert info.value.span.column == 23


def test_a_set_in_a_default_is_a_dimension_of_the_sweep():
    counts = archlang.sweep_params("let f(w={16, 32}) = conv(w, kernel=1)\nseq(input(3, 8, 8), f, gap, linear(10))")
    assert [n for _, n in counts] == [3 * 16 + 16 * 10 + 10, 3 * 32 + 32 * 10 + 10]
