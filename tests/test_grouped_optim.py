"""The grouped optimizer's fast paths: chunked updates and gradients kept in one flat buffer."""

from __future__ import annotations

import pytest
import torch
from compilers import BACKENDS
from torch._dynamo.testing import CompileCounterWithBackend

import archlang
from archlang.grouped import CopyHyper, GroupedModel, grouped_loss, grouped_optimizer
from archlang.grouped import optim as grouped_optim
from archlang.grouped.layers import GBatchNorm, GFoldedResidual

SPEC = "mlp(depth=4, width=16, block=gated(residual))"
HYPERS = {
    "nadam": [CopyHyper("nadam", lr=0.002 * (i + 1), weight_decay=1e-4 * i) for i in range(3)],
    "sgd": [CopyHyper("sgd", lr=0.1, momentum=m, nesterov=n, weight_decay=1e-3)
            for m, n in [(0.9, True), (0.5, False), (0.0, False)]],
}


def _train(kind: str, steps: int = 3, hypers: list[CopyHyper] | None = None, fused: bool = True) -> GroupedModel:
    compiled = archlang.compile_spec(SPEC)
    model = GroupedModel.from_ir(compiled.network, [0, 1, 2])
    optimizer = grouped_optimizer(model, hypers or HYPERS[kind])
    if not fused:
        optimizer._decay_runs = None  # what copies with differing decay get: the chunked path
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(3, 8, *compiled.input_shape, generator=g)
        y = torch.randint(0, compiled.num_classes, (3, 8), generator=g)
        optimizer.zero_grad()
        grouped_loss(model(x), y).sum().backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("kind", sorted(HYPERS))
def test_chunked_update_is_bit_identical_to_one_pass(kind, monkeypatch):
    """Chunks of 64 elements (hundreds here, with a ragged last one) give the bits of one pass."""
    monkeypatch.setattr(grouped_optim, "CHUNK", 1 << 30)
    whole = _train(kind).state_dict()
    monkeypatch.setattr(grouped_optim, "CHUNK", 64)
    chunked = _train(kind).state_dict()
    for name, value in whole.items():
        assert torch.equal(chunked[name], value), name


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_shared_sgd_settings_take_torchs_fused_kernel(momentum):
    """Copies with one SGD setting (decay exempting the biases: several decay runs) step with
    torch's fused kernel (the single runs' own); the per-copy chunked path agrees to rounding."""
    exempt = frozenset(n for n, _ in archlang.compile_spec(SPEC).build().named_parameters() if n.endswith("bias"))
    hypers = [CopyHyper("sgd", lr=0.1, momentum=momentum, nesterov=momentum > 0, weight_decay=1e-3,
                        settings={n: (1.0, 0.0) for n in exempt})] * 3
    fused = _train("sgd", hypers=hypers).state_dict()
    chunked = _train("sgd", hypers=hypers, fused=False).state_dict()
    for name, value in fused.items():
        torch.testing.assert_close(chunked[name], value, atol=1e-6, rtol=0, msg=name)


def test_flat_buffers_hold_parameters_by_setting_and_module_order_states_still_load():
    compiled = archlang.compile_spec("mlp(depth=3, width=8, bn=false)")
    module_names = [n for n, _ in GroupedModel.from_ir(compiled.network, [0, 1]).named_parameters()]
    exempt = {n: (1.0, 0.0) for n in module_names if n.endswith("bias")}
    hypers = [CopyHyper("sgd", lr=0.1, momentum=0.9, weight_decay=1e-3, settings=exempt)] * 2
    model = GroupedModel.from_ir(compiled.network, [0, 1])
    optimizer = grouped_optimizer(model, hypers)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):  # momentum buffers that differ between parameters
        optimizer.zero_grad()
        x, y = torch.randn(2, 4, *compiled.input_shape, generator=g), torch.randint(0, 10, (2, 4), generator=g)
        grouped_loss(model(x), y).sum().backward()
        optimizer.step()
    names = [n for n, _ in optimizer.named]
    assert names == [n for n in module_names if n not in exempt] + list(exempt)  # weights, then biases
    assert len(optimizer._decay_runs) == 2  # one fused call per setting, not one per parameter
    state = optimizer.state_dict()
    assert state["order"].tolist() == [module_names.index(n) for n in names]
    # The same state as written before the order existed: module order, no "order" entry.
    pieces = dict(zip(names, state["momentum_buffer"].split([p.numel() for _, p in optimizer.named])))
    old = {k: v for k, v in state.items() if k != "order"}
    old["momentum_buffer"] = torch.cat([pieces[n] for n in module_names])
    assert not torch.equal(old["momentum_buffer"], state["momentum_buffer"])  # the layouts do differ
    for saved in (state, old):
        fresh = grouped_optimizer(GroupedModel.from_ir(compiled.network, [0, 1]), hypers)
        fresh.load_state_dict(saved)
        assert torch.equal(fresh.state["momentum_buffer"], state["momentum_buffer"])
    other = grouped_optimizer(GroupedModel.from_ir(archlang.compile_spec("mlp(depth=2, width=8, bn=false)").network,
                                                   [0, 1]), hypers)
    with pytest.raises(ValueError, match="parameters"):
        other.load_state_dict(state)


def test_gradients_accumulate_into_the_flat_buffer_and_stray_ones_are_taken_back():
    compiled = archlang.compile_spec("mlp(depth=2, width=8, bn=false)")
    model = GroupedModel.from_ir(compiled.network, [0, 1])
    optimizer = grouped_optimizer(model, [CopyHyper("sgd", lr=1.0)] * 2)
    x, y = torch.randn(2, 4, *compiled.input_shape), torch.randint(0, 10, (2, 4))
    optimizer.zero_grad()
    grouped_loss(model(x), y).sum().backward()
    params = [p for _, p in optimizer.named]
    offsets = [0]
    for p in params:
        offsets.append(offsets[-1] + p.numel())
    for p, start in zip(params, offsets):
        assert p.grad.data_ptr() == optimizer.flat_grad[start:].data_ptr()  # autograd wrote in place
    expected = [p.detach() - p.grad for p in params]
    params[0].grad = params[0].grad.clone()  # replaced by someone: its values still count
    params[1].grad = None  # cleared: counts as zero
    expected[1] = params[1].detach().clone()
    optimizer.step()
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.detach(), want, atol=1e-6, rtol=0)
    assert params[0].grad.data_ptr() == optimizer.flat_grad.data_ptr()


def test_a_gate_after_its_bodys_batch_norm_is_folded_and_keeps_its_name():
    compiled = archlang.compile_spec(SPEC)
    model = GroupedModel.from_ir(compiled.network, [0, 1])
    folded = [m for m in model.modules() if isinstance(m, GFoldedResidual)]
    assert folded and all(isinstance(m.body[-2], GBatchNorm) and m.body[-2]._scaled_by == (m.gate,) for m in folded)
    single = compiled.build().state_dict()
    assert model.state_dict().keys() == single.keys()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_feature_batch_norm_matches_torchs_per_copy(momentum):
    """Training-mode GBatchNorm on features (computed as a group norm) against each copy's own
    nn.BatchNorm1d: outputs, input gradients and running statistics (momentum None: cumulative)."""
    singles = [torch.nn.BatchNorm1d(5, momentum=momentum) for _ in range(3)]
    grouped = GBatchNorm(singles)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = (torch.randn(3, 6, 5, generator=g) * 3 + 1).requires_grad_()
        weights = torch.randn(3, 6, 5, generator=g)  # d(loss)/dy: a plain sum would give input gradient 0
        y = grouped(x.transpose(1, 2).contiguous())
        (y * weights.transpose(1, 2)).sum().backward()
        for i, bn in enumerate(singles):
            xi = x.detach()[i].clone().requires_grad_()
            out = bn(xi)
            (out * weights[i]).sum().backward()
            torch.testing.assert_close(y[i].detach().t(), out.detach(), atol=1e-5, rtol=0)
            torch.testing.assert_close(x.grad[i], xi.grad, atol=1e-5, rtol=0)
    for i, bn in enumerate(singles):
        torch.testing.assert_close(grouped.running_mean[i], bn.running_mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(grouped.running_var[i], bn.running_var, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_nadam_pass_equals_the_chunked_update(backend):
    """compile_step: one compiled pass, per-copy lr and decay (per-element factors) and shared ones
    (0-d), against the chunked eager update over 3 steps of the same (synthetic) gradients."""
    results, start = [], None
    for fused in (False, True):
        model = GroupedModel.from_ir(archlang.compile_spec(SPEC).network, [0, 1, 2])
        # Decay strong enough to show in every factor it enters (the update, both averages).
        optimizer = grouped_optimizer(model, [CopyHyper("nadam", lr=0.01 * (i + 1), weight_decay=0.5 * i)
                                              for i in range(3)])
        start = optimizer.flat.clone()
        if fused:
            optimizer.compile_step(backend=backend)
        g = torch.Generator().manual_seed(3)
        for _ in range(3):
            optimizer.zero_grad()
            optimizer.flat_grad.copy_(torch.randn(optimizer.flat_grad.shape, generator=g))
            optimizer.step()
        results.append((optimizer.flat.clone(), optimizer.state["exp_avg"].clone(),
                        optimizer.state["exp_avg_sq"].clone()))
    assert (results[0][0] - start).abs().min() > 0  # every element moved: the steps ran
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-5)


def test_compiled_nadam_pass_is_traced_once_as_lrs_meet_and_steps_go_on():
    """Per-copy lrs make the step factors per element; at a schedule factor of 0 they meet (one
    scalar); the compiled pass still traces once (a factor once per element stays so)."""
    counter = CompileCounterWithBackend("aot_eager")
    model = GroupedModel.from_ir(archlang.compile_spec(SPEC).network, [0, 1, 2])
    optimizer = grouped_optimizer(model, HYPERS["nadam"])
    optimizer.compile_step(backend=counter)
    for factor in (1.0, 0.5, 0.0, 1.0):
        optimizer.set_lr_factor(factor)
        optimizer.zero_grad()
        optimizer.flat_grad.normal_()
        optimizer.step()
    assert counter.frame_count == 1
