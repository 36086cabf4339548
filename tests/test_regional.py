"""--compile as regions (archlang.regional): which modules share a compiled chunk, and a compiled
run equals its eager run to rounding, single and grouped, batch-norm running statistics included."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from compilers import BACKENDS
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

import archlang
from archlang import regional
from archlang.grouped import CopyHyper, GroupedModel, grouped_loss, grouped_optimizer, split_state
from archlang.train import model_tools
from archlang.train.recipes import build_recipe

SPEC = "mlp(depth=6, width=16, block=gated(residual))"  # 3 blocks between the stem and the head
SEEDS = [0, 3]


def _kinds(chunks: list[tuple[nn.Module, ...]]) -> list[str]:
    return ["+".join(type(m).__name__ for m in chunk) for chunk in chunks]


def test_runs_of_identical_blocks_make_chunks_of_at_most_the_size() -> None:
    model = archlang.compile_spec(SPEC).build()
    assert _kinds(regional.chunks_of(list(model), 2)) == [
        "Flatten", "Linear", "BatchNorm1d", "ReLU", "Residual+Residual", "Residual", "Linear"]
    assert _kinds(regional.chunks_of(list(model), 10))[4] == "Residual+Residual+Residual"
    # Blocks that differ (here: width) never share a chunk; lone layers are never chunked together.
    mixed = [nn.Sequential(nn.Linear(4, 4)), nn.Sequential(nn.Linear(4, 8)), nn.ReLU(), nn.ReLU()]
    assert [len(c) for c in regional.chunks_of(mixed, 10)] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="chunk size must be >= 1"):
        regional.chunks_of(mixed, 0)


def test_one_compilation_serves_every_chunk_of_a_kind() -> None:
    """5 blocks in chunks of 2: the two chunks of 2 share one traced frame, the chunk of 1 has its own;
    training steps (forward, backward) after the first trace nothing again."""
    model = archlang.compile_spec("mlp(depth=10, width=8, block=gated(residual))").build().train()
    counter = CompileCounterWithBackend("aot_eager")
    forward = regional.compiled_runner(list(model), 2, backend=counter)
    for _ in range(3):
        forward(torch.randn(4, 1, 28, 28)).sum().backward()
    assert counter.frame_count == 2


def _sgd_recipe(seed: int) -> Any:
    # SGD: Adam-type updates turn the rounding noise of a bias-before-BN gradient (true value 0) into
    # steps of ~lr, which would hide what this test checks.
    return build_recipe("wrn-cifar").recipe.model_copy(update={"seed": seed})


def _grouped(compile_options: dict[str, Any] | None) -> tuple[GroupedModel, Any]:
    recipes = [_sgd_recipe(s) for s in SEEDS]
    model = GroupedModel.from_ir(archlang.compile_spec(SPEC).network, SEEDS,
                                 init=lambda m, i: model_tools.apply_init(m, recipes[i])).train()
    optimizer = grouped_optimizer(model, [CopyHyper.from_recipe(r) for r in recipes])
    if compile_options is not None:
        model.compile_blocks(2, **compile_options)
    return model, optimizer


def _train_grouped(compile_options: dict[str, Any] | None, steps: int = 2) -> tuple[GroupedModel, torch.Tensor]:
    model, optimizer = _grouped(compile_options)
    g = torch.Generator().manual_seed(7)
    first = None
    for _ in range(steps):
        x = torch.randn(len(SEEDS), 16, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (len(SEEDS), 16), generator=g)
        optimizer.zero_grad()
        logits = model(x)
        first = logits.detach() if first is None else first
        grouped_loss(logits, y).sum().backward()
        optimizer.step()
    return model, first  # type: ignore[return-value]


def _assert_states_close(a: GroupedModel, b: GroupedModel) -> None:
    for left, right in zip(split_state(a), split_state(b)):
        assert left.keys() == right.keys()
        for name in left:
            torch.testing.assert_close(left[name], right[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grouped_compiled_steps_equal_eager_steps(backend: str) -> None:
    """Outputs, weights and running statistics after 2 SGD steps: compiled (batch norm in plain ops,
    see GBatchNorm._traced_features) against eager (group norm). aot_eager traces forward and
    backward without C++; inductor is what --compile runs."""
    eager, eager_logits = _train_grouped(None)
    counter = CompileCounterWithBackend(backend)
    compiled, compiled_logits = _train_grouped({"backend": counter})
    assert counter.frame_count == 2  # both kinds of chunk (2 blocks, 1 block) traced once and ran
    torch.testing.assert_close(compiled_logits, eager_logits, atol=1e-5, rtol=0)
    _assert_states_close(compiled, eager)
    compiled.eval()  # evaluation runs eagerly on the compiled run's weights
    x = torch.randn(len(SEEDS), 4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager.eval()(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_regional_step_equals_eager_step(backend: str) -> None:
    compiled = archlang.compile_spec(SPEC)
    recipe = _sgd_recipe(0)
    states = []
    counter = CompileCounterWithBackend(backend)
    for wrap in (lambda m: m, lambda m: regional.Regional(m, 2, backend=counter)):
        torch.manual_seed(0)
        model = compiled.build().train()
        model_tools.apply_init(model, recipe)
        optimizer = model_tools.build_optimizer(model, recipe, torch.device("cpu"))
        runner = wrap(model)
        g = torch.Generator().manual_seed(1)
        for _ in range(2):
            optimizer.zero_grad(set_to_none=True)
            x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
            F.cross_entropy(runner(x), y).backward()
            optimizer.step()
        states.append(model.state_dict())
    assert counter.frame_count == 2  # chunks of 2 and of 1 blocks, each traced once, both ran
    assert states[0].keys() == states[1].keys()
    for name in states[0]:
        torch.testing.assert_close(states[1][name], states[0][name], atol=1e-5, rtol=0, msg=name)
