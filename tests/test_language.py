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
