"""Grouped copies against single runs: same init, same batches, same recipe => same weights.

The single run here is the trainer's own path (manual_seed, build, apply_init, build_optimizer),
so a grouped copy is checked against what `archlang train` would compute for its seed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archlang
from archlang.errors import ArchlangError
from archlang.grouped import (
    GroupedModel,
    grouped_loss,
    grouped_optimizer,
    merge_states,
    split_state,
)
from archlang.runs import Progress, Totals
from archlang.runs import rng as run_rng
from archlang.runs.checkpoint import read_grouped, write_grouped
from archlang.train import model_tools
from archlang.train.grouped_trainer import copy_hyper
from archlang.train.recipes import build_recipe

COPIES = 3
BATCH = 8
SEEDS = [0, 5, 11]
LRS = [1.0, 0.5, 2.0]  # per-copy multiples of the recipe's lr: copies differ in lr

CASES = {
    "gated-residual-mlp": ("mlp(depth=4, width=16, block=gated(residual))", "gated-mnist"),
    "gated-plain-mlp": ("mlp(depth=3, width=16, block=gated(plain))", "gated-mnist"),
    "residual-mlp-no-bn": ("mlp(depth=4, width=16, block=residual, bn=false)", "highway-mnist"),
    "highway-mlp": ("mlp(depth=3, width=16, block=highway, bn=false)", "highway-mnist"),
    "wrn": ("wrn(depth=10, k=1, input=[3, 8, 8])", "wrn-cifar"),
    "gated-wrn": ("wrn(depth=10, k=1, block=gated(B(3,3)), input=[3, 8, 8])", "gated-cifar-wrn"),
    "zeropad-resnet": ("preact_resnet(depth=8, shortcut=zeropad, input=[3, 8, 8])", "wrn-cifar"),
}


def _recipes(name: str) -> list:
    base = build_recipe(name).recipe
    return [base.model_copy(update={"seed": s, "lr": base.lr * f}) for s, f in zip(SEEDS, LRS)]


def _batches(compiled, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps, G, B, ...) inputs and (steps, G, B) targets: each copy its own data."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(steps, COPIES, BATCH, *compiled.input_shape, generator=g)
    y = torch.randint(0, compiled.num_classes, (steps, COPIES, BATCH), generator=g)
    return x, y


def _single(compiled, recipe) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(recipe.seed)
    model = compiled.build()
    model_tools.apply_init(model, recipe)
    return model, model_tools.build_optimizer(model, recipe, torch.device("cpu"))


def _grouped(compiled, recipes):
    model = GroupedModel.from_ir(compiled.network, SEEDS, init=lambda m, i: model_tools.apply_init(m, recipes[i]))
    probe = compiled.build()
    return model, grouped_optimizer(model, [copy_hyper(probe, r) for r in recipes])


def _grouped_step(model, optimizer, x, y) -> torch.Tensor:
    optimizer.zero_grad()
    logits = model(x)
    grouped_loss(logits, y).sum().backward()
    optimizer.step()
    return logits


def _running_means_after_biases(model: torch.nn.Module) -> set[str]:
    """Running means of batch norms right after a biased layer: they track that bias (below)."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        if isinstance(module, torch.nn.Sequential):
            for j in range(len(module) - 1):
                if getattr(module[j], "bias", None) is not None and isinstance(
                        module[j + 1], torch.nn.modules.batchnorm._BatchNorm):
                    names.add(f"{prefix}.{j + 1}.running_mean".lstrip("."))
    return names


def _rounding_level(single: torch.nn.Module, noisy: float) -> dict[str, torch.Tensor]:
    """Per-element tolerances for Adam-type updates: `noisy` where the first gradient is at rounding level.

    Adam's first update is lr * g / (|g| + eps); for |g| below ~1e-5 (a bias before batch norm has
    true gradient 0) the rounding noise of g, ~1e-6 of the largest gradient, moves it by up to lr.
    The single run itself moves such elements by ~lr between 1 and 2 threads; they do not change
    the outputs. Everything else is held to 1e-5.
    """
    tolerances = {n: torch.where(p.grad.abs() < 1e-5, noisy, 1e-5) for n, p in single.named_parameters()}
    for name in _running_means_after_biases(single):
        tolerances[name] = torch.tensor(noisy)
    return tolerances


def _assert_state_equal(grouped, singles, atol: float, loose: list[dict[str, torch.Tensor]] | None = None) -> None:
    """Every tensor to `atol`, or elementwise to loose[i][name] where given."""
    for i, (state, single) in enumerate(zip(split_state(grouped), singles)):
        expected = single.state_dict()
        assert state.keys() == expected.keys()
        for name, value in expected.items():
            assert state[name].shape == value.shape, name
            tol = loose[i].get(name) if loose else None
            if tol is None:
                torch.testing.assert_close(state[name], value, atol=atol, rtol=0, msg=f"copy {i}: {name}")
            else:
                worst = ((state[name] - value).abs() - tol).max()
                assert worst <= 0, f"copy {i}: {name} off by {worst:.3g} beyond its tolerance"


@pytest.mark.parametrize("case", sorted(CASES))
def test_three_steps_equal_single_runs(case):
    """Copies start as their seeds' single runs (exactly); forward outputs per copy, weights and BN
    statistics after 1 and 3 steps agree to 1e-5."""
    spec, recipe_name = CASES[case]
    compiled = archlang.compile_spec(spec)
    recipes = _recipes(recipe_name)
    grouped, optimizer = _grouped(compiled, recipes)
    runs = [_single(compiled, r) for r in recipes]
    _assert_state_equal(grouped, [m for m, _ in runs], atol=0)
    xs, ys = _batches(compiled, 3)
    adam = recipes[0].optimizer == "nadam"
    loose: list[dict[str, torch.Tensor]] = []
    for step in range(3):
        logits = _grouped_step(grouped, optimizer, xs[step], ys[step])
        for i, (model, opt) in enumerate(runs):
            opt.zero_grad(set_to_none=True)
            out = model(xs[step, i])
            F.cross_entropy(out, ys[step, i]).backward()
            # Adam-type runs carry the rounding-level noise of _rounding_level into the outputs: the
            # single run's own logits after 3 steps differ by up to 6e-5 between 1 and 2 threads here,
            # and 1.07e-4 was seen inside the full suite; before any step they must agree to 1e-5.
            torch.testing.assert_close(logits[i], out, atol=2e-4 if adam and step else 1e-5, rtol=0)
            if step == 0 and adam:
                loose.append(_rounding_level(model, 2 * 3 * recipes[i].lr))
            opt.step()
        if step in (0, 2):
            _assert_state_equal(grouped, [m for m, _ in runs], atol=1e-5, loose=loose or None)


@pytest.mark.parametrize("training", [True, False])
def test_folded_gates_closed_or_open_match_single_runs(training):
    """Gates folded into their body's batch norm (GFoldedResidual) with k from gate_init=glorot_uniform,
    U(-sqrt 3, sqrt 3), as the k-glorot hypothesis trains them: closed gates (k <= 0, g = 0, no
    gradient to k) beside open ones far from 1. Outputs and every parameter's gradient per copy
    equal the single runs', in training and in eval mode."""
    from archlang.grouped.layers import GFoldedResidual

    compiled = archlang.compile_spec("mlp(depth=6, width=16, block=gated(residual))")
    base = build_recipe("gated-mnist", overrides={"gate_init": "glorot_uniform"}).recipe
    recipes = [base.model_copy(update={"seed": s}) for s in SEEDS]
    grouped, _ = _grouped(compiled, recipes)
    assert any(isinstance(m, GFoldedResidual) for m in grouped.modules())
    ks = torch.cat([p.detach() for n, p in grouped.named_parameters() if n.endswith(".k")])
    assert (ks <= 0).any() and (ks > 0).any() and ((ks - 1).abs() > 0.5).any()
    singles = [_single(compiled, r)[0].train(training) for r in recipes]
    x, y = _batches(compiled, 1)
    logits = grouped.train(training)(x[0])
    grouped_loss(logits, y[0]).sum().backward()
    params = dict(grouped.named_parameters())
    for i, single in enumerate(singles):
        out = single(x[0, i])
        F.cross_entropy(out, y[0, i]).backward()
        torch.testing.assert_close(logits[i], out, atol=1e-5, rtol=0)
        for name, p in single.named_parameters():
            torch.testing.assert_close(params[name].grad[i], p.grad, atol=1e-5, rtol=0, msg=f"copy {i}: {name}")


def test_per_copy_momentum_and_nesterov_match_torch_sgd():
    compiled = archlang.compile_spec("mlp(depth=2, width=8, block=highway, bn=false)")
    base = build_recipe("highway-mnist").recipe
    recipes = [base.model_copy(update={"seed": s, **u}) for s, u in zip(SEEDS, [
        {"momentum": 0.9, "nesterov": True}, {"momentum": 0.5, "nesterov": False, "dampening": 0.1},
        {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}])]
    grouped, optimizer = _grouped(compiled, recipes)
    runs = [_single(compiled, r) for r in recipes]
    xs, ys = _batches(compiled, 3)
    for step in range(3):
        _grouped_step(grouped, optimizer, xs[step], ys[step])
        for i, (model, opt) in enumerate(runs):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xs[step, i]), ys[step, i]).backward()
            opt.step()
    _assert_state_equal(grouped, [m for m, _ in runs], atol=1e-5)


@pytest.mark.parametrize("per_copy_lr", [False, True], ids=["shared-lr-fused", "per-copy-lr-chunked"])
def test_caffe_multipliers_and_momentum_resets_match_single_runs(per_copy_lr):
    """Caffe's bias lr x2 and classifier decay x10 (highway-mnist-conv), a classifier lr x0.5 added,
    an lr schedule, and momentum resets of one copy then of all: each copy steps as its single run
    (torch SGD's groups under LambdaLR, model_tools.reset_momentum), on torch's fused kernel when the
    copies share their lr and on the per-element path when they do not."""
    compiled = archlang.compile_spec("highway_cnn(variant=mnist, width=4)")
    base = build_recipe("highway-mnist-conv", overrides={"classifier_lr_mult": 0.5}).recipe
    assert base.bias_lr_mult == 2.0 and base.classifier_decay_mult == 10.0 and base.momentum == 0.9
    factors = LRS if per_copy_lr else [1.0] * COPIES
    recipes = [base.model_copy(update={"seed": s, "lr": base.lr * f}) for s, f in zip(SEEDS, factors)]
    grouped, optimizer = _grouped(compiled, recipes)
    runs = [_single(compiled, r) for r in recipes]
    base_lrs = [[group["lr"] for group in opt.param_groups] for _, opt in runs]
    xs, ys = _batches(compiled, 5)
    schedule, resets = [1.0, 1.0, 0.1, 0.1, 0.01], [[], [], [1], [], [0, 1, 2]]
    for step in range(5):
        optimizer.set_lr_factor(schedule[step])
        optimizer.reset_momentum(resets[step])
        _grouped_step(grouped, optimizer, xs[step], ys[step])
        for i, (model, opt) in enumerate(runs):
            for group, lr in zip(opt.param_groups, base_lrs[i]):
                group["lr"] = lr * schedule[step]  # LambdaLR's rule
            if i in resets[step]:
                model_tools.reset_momentum(opt)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xs[step, i]), ys[step, i]).backward()
            opt.step()
        _assert_state_equal(grouped, [m for m, _ in runs], atol=1e-5)
    assert ("lr_mult" in optimizer._vectors) == per_copy_lr  # the path the test is named for


def _train(model, optimizer, xs, ys, steps: range) -> None:
    for step in steps:
        _grouped_step(model, optimizer, xs[step], ys[step])


@pytest.mark.parametrize("case", ["gated-residual-mlp", "highway-mlp"])
def test_resume_through_safetensors_is_bit_identical(case, tmp_path):
    spec, recipe_name = CASES[case]
    compiled = archlang.compile_spec(spec)
    recipes = _recipes(recipe_name)
    xs, ys = _batches(compiled, 4)
    straight, straight_opt = _grouped(compiled, recipes)
    _train(straight, straight_opt, xs, ys, range(4))

    first, first_opt = _grouped(compiled, recipes)
    _train(first, first_opt, xs, ys, range(2))
    # The trainer's grouped checkpoint (archlang.runs.checkpoint), the one format a resume reads.
    progress = [Progress(epoch=0, step=2, totals=Totals(), history=[], run_hash="ab" * 32, rng=[run_rng.capture()])]
    path = write_grouped(tmp_path, first.state_dict(), first_opt.state_dict(), progress * COPIES)
    resumed = GroupedModel.from_ir(compiled.network, [1, 2, 3])  # other seeds: everything must come from the file
    resumed_opt = grouped_optimizer(resumed, first_opt.hypers)
    state = read_grouped(path)
    resumed.load_state_dict(state.model)
    resumed_opt.load_state_dict(state.optimizer)
    _train(resumed, resumed_opt, xs, ys, range(2, 4))
    for name, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


@pytest.mark.parametrize("case", ["gated-residual-mlp", "highway-mlp", "gated-wrn", "zeropad-resnet"])
def test_split_and_merge_round_trip_through_single_models(case):
    """After a step (BN statistics moved), copy i's state loads into an ordinary model of the spec,
    which then computes copy i's outputs in eval mode; merging the states gives the grouped model back."""
    compiled = archlang.compile_spec(CASES[case][0])
    recipes = _recipes(CASES[case][1])
    grouped, optimizer = _grouped(compiled, recipes)
    xs, ys = _batches(compiled, 2)
    _grouped_step(grouped, optimizer, xs[0], ys[0])
    states = split_state(grouped)
    grouped.eval()
    for i, state in enumerate(states):
        single = compiled.build().eval()
        single.load_state_dict(state)
        torch.testing.assert_close(grouped(xs[1])[i], single(xs[1, i]), atol=1e-5, rtol=0)
    merged = merge_states(compiled.network, states)
    for name, value in grouped.state_dict().items():
        assert torch.equal(merged.state_dict()[name], value), name


def test_layers_without_grouped_form_are_refused_by_kind():
    compiled = archlang.compile_spec("diracnet(depth=10, k=1)")
    with pytest.raises(ArchlangError) as err:
        GroupedModel.from_ir(compiled.network, SEEDS, source=compiled.source)
    assert err.value.message == "grouped training (several copies in one process) does not support ncrelu layers"  # the first in source order
    assert err.value.span is not None


def test_a_file_that_is_not_a_grouped_checkpoint_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ArchlangError) as err:
        read_grouped(tmp_path / "other.safetensors")
    assert err.value.message == "not an archlang grouped checkpoint (missing format tag)"


def test_group_meter_sums_each_copy_exactly_as_its_own_meter_and_skips_a_diverged_one():
    from archlang.train import ddp
    from archlang.train.meter import GroupMeter, Meter

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(5, 3, 8, 10, generator=g), torch.randint(0, 10, (5, 3, 8), generator=g)
    losses = torch.stack([grouped_loss(logits[s], y[s]) for s in range(5)])  # (steps, G)
    losses[3, 1] = float("inf")  # copy 1 diverges at step 3 (inf, not NaN: the reported losses compare equal)
    start = [Totals(loss_sum=1.25, wrong=3, seen=16), Totals(), Totals(loss_sum=0.5, wrong=1, seen=8)]
    group, single = GroupMeter(torch.device("cpu"), start), [Meter(torch.device("cpu"), ddp.SINGLE, t) for t in start]
    for s in range(5):
        group.add(losses[s], logits[s], y[s])
        for i, m in enumerate(single):
            m.add(losses[s, i], logits[s, i], y[s, i])
    found = group.read_back([True, True, True])
    mine = [m.read_back([]) for m in single]
    assert found == [None if r.first_bad is None else (r.first_bad, r.bad_loss) for r in mine]
    assert found[1] is not None and found[1][0] == 3 and found[0] is None and found[2] is None
    for i, m in enumerate(single):  # bit for bit: an exact resume reads these totals back
        assert group.totals(i, 2.0) == m.totals(2.0) and group.record(i) == m.record()
    # a dead copy's later sums are never added; the others go on, and a new epoch starts each from zero
    group.add(losses[0], logits[0], y[0])
    assert group.read_back([True, False, True]) == [None, None, None] and group.totals(1, 0.0) == single[1].totals(0.0)
    group.reset(0)
    assert group.totals(0, 0.0) == Totals() and group.seen[2] == single[2].seen + 8
