"""One optimizer step for all G copies, with per-copy hyperparameters.

The arithmetic is torch.optim's single-tensor SGD and NAdam (torch/optim/sgd.py, nadam.py: L2
weight decay added to the gradient, SGD's first momentum buffer a copy of the gradient, NAdam's
mu-product kept in float32), applied to ONE flat tensor holding every parameter of every copy.
A hyperparameter the copies share is a Python scalar, as in torch; one they do not is a
per-element vector (each copy's value repeated over its slice of every parameter), so copy g's
update is its single run's.

Two things make the step cheap at G = 8 (2.4M floats for the 100-layer gated net, measured
single-threaded with torch.profiler): the gradients are views of one flat gradient buffer, so
autograd accumulates into it in place and no torch.cat gathers them (8.8 ms of a ~150 ms step);
and every update op runs chunk by chunk (CHUNK elements, all ops on one chunk before the next)
so each op finds its operands in cache instead of making ~8 passes over 10 MB tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from archlang import regional
from archlang.grouped.hyper import CopyHyper, Setting, by_setting

# Elements per chunk: a multiple of 64, so each elementwise kernel splits a chunk into the same
# vectorised body and scalar tail as the whole tensor (equal bits); ~5 chunk-sized operands fit in L2.
CHUNK = 1 << 16

Hyper = float | torch.Tensor  # a scalar shared by all copies, or a per-element vector


def _part(value: Hyper, piece: slice) -> Hyper:
    return value if isinstance(value, float) else value[piece]


NADAM_FACTORS = ("one_minus_b1", "beta2", "one_minus_b2", "correction2", "eps", "grad_step", "avg_step")


def nadam_pass(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
               weight_decay: torch.Tensor, one_minus_b1: torch.Tensor, beta2: torch.Tensor,
               one_minus_b2: torch.Tensor, correction2: torch.Tensor, eps: torch.Tensor, grad_step: torch.Tensor,
               avg_step: torch.Tensor) -> None:
    """_nadam_chunk's arithmetic over whole tensors, every factor a tensor (0-d or per element)."""
    grad = grad + weight_decay * param
    exp_avg.lerp_(grad, one_minus_b1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad * one_minus_b2)
    denom = (exp_avg_sq / correction2).sqrt() + eps
    param.addcmul_(grad / denom, grad_step).addcmul_(exp_avg / denom, avg_step)


class GroupedOptimizer:
    """SGD or NAdam over a grouped model's parameters (each of shape (G, ...))."""

    def __init__(self, model: nn.Module, hypers: Sequence[CopyHyper]) -> None:
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.copies = len(hypers)
        kinds = {h.optimizer for h in hypers}
        if len(kinds) != 1 or not kinds <= {"sgd", "nadam"}:
            raise ValueError(f"grouped copies take one optimizer, sgd or nadam; got {sorted(kinds)}")
        if any(p.shape[0] != self.copies for _, p in self.named):
            raise ValueError("every parameter needs the copies on its first axis, one per hyperparameter set")
        self.kind = kinds.pop()
        self.hypers = list(hypers)
        settings = [[h.setting(n) for n, _ in self.named] for h in self.hypers]
        # flat holds the parameters by setting, not in module order: Caffe-style exempt biases alternate with
        # weights, which made one fused SGD call per parameter (49-layer highway MLP, G = 8, 1 thread:
        # 200 calls, 8.0 ms a step; by setting 2 calls, 3.1 ms).
        self.order = by_setting(settings)
        self.named = [self.named[i] for i in self.order]
        settings = [[row[i] for i in self.order] for row in settings]
        self.sizes = [p[0].numel() for _, p in self.named]
        self.flat = torch.cat([p.detach().reshape(-1) for _, p in self.named])
        self.flat_grad = torch.zeros_like(self.flat)
        # The module keeps its Parameters; their storage moves into `flat`, their gradients into `flat_grad`.
        self._grad_views: list[torch.Tensor] = []
        offset = 0
        for _, p in self.named:
            p.data = self.flat[offset: offset + p.numel()].view_as(p)
            self._grad_views.append(self.flat_grad[offset: offset + p.numel()].view_as(p))
            offset += p.numel()
        self._attach_grads()
        self.lr_factor = torch.ones(self.copies, dtype=torch.float64)
        self.step_count = 0
        self.state: dict[str, torch.Tensor] = {}
        self._weight_decay = self._expand([[wd for _, wd in row] for row in settings])
        mults = [[mult for mult, _ in row] for row in settings]
        self._mults = mults if any(m != 1.0 for row in mults for m in row) else None
        if self._mults is not None and self.kind != "sgd":
            raise ValueError("lr multipliers apply to grouped sgd only")
        self._decay_runs = self._runs(settings)
        self._copy_index: torch.Tensor | None = None  # element -> its copy, built when first needed
        self._vectors: dict[str, tuple[tuple[float, ...], Hyper]] = {}
        self._fused_nadam: Any = None  # compile_step's function, else the chunked eager update
        self._per_element: set[str] = set()  # the factors the compiled pass has had per element

    def compile_step(self, **options: Any) -> None:
        """NAdam's update as one torch.compile'd pass over the flat buffer (`options` go to torch.compile).
        Measured (G = 8 100-layer gated MLP, 2.4M floats, 1 thread, machine shared): 12.3 ms a step
        chunked, 3.6 ms compiled; equal to rounding (test). SGD keeps torch's fused kernel."""
        if self.kind == "nadam":  # a code object of its own: dynamo's cache (and its limit) is this optimizer's
            self._fused_nadam = torch.compile(regional.own_code(nadam_pass, id(self)), **options)

    def _fixed_rank(self, name: str, value: Hyper) -> torch.Tensor:
        """A factor as the compiled pass takes it. Tensors, not floats (dynamo compiles again for each
        new float); and a factor once per element stays so (copies' lrs that meet, at a factor of 0,
        would otherwise turn it 0-d and recompile), so each factor changes rank at most once."""
        if isinstance(value, torch.Tensor):
            self._per_element.add(name)
            return value
        if name in self._per_element:
            return torch.full_like(self.flat, value)
        return torch.tensor(value, dtype=self.flat.dtype, device=self.flat.device)

    def _expand(self, values: Sequence[Sequence[float]]) -> Hyper:
        """values[g][j] for copy g, parameter j: a scalar when all agree, else a per-element vector."""
        distinct = {v for row in values for v in row}
        if len(distinct) == 1:
            return float(distinct.pop())
        table = torch.tensor(values, dtype=torch.float64).to(self.flat.device, self.flat.dtype)
        return torch.cat([table[:, j, None].expand(-1, n).reshape(-1) for j, n in enumerate(self.sizes)])

    def _runs(self, values: Sequence[Sequence[Setting]]) -> list[tuple[slice, Setting]] | None:
        """Maximal slices of `flat` with one value of values[g][j] (per copy g, parameter j) for all
        copies; None when the copies differ for some parameter."""
        runs: list[tuple[slice, Setting]] = []
        start = 0
        for j, n in enumerate(self.sizes):
            distinct = {row[j] for row in values}
            if len(distinct) > 1:
                return None
            value, end = distinct.pop(), start + n * self.copies
            if runs and runs[-1][1] == value:
                runs[-1] = (slice(runs[-1][0].start, end), value)
            else:
                runs.append((slice(start, end), value))
            start = end
        return runs

    def _per_copy(self, values: Sequence[float]) -> Hyper:
        """values[g] for copy g: a scalar when all agree, else a per-element vector, gathered from the G
        values by each element's copy (one op; expanding it parameter by parameter took one op each)."""
        if len(set(values)) == 1:
            return float(values[0])
        if self._copy_index is None:
            self._copy_index = torch.cat([torch.arange(self.copies, dtype=torch.int32, device=self.flat.device)
                                          .repeat_interleave(n) for n in self.sizes])
        table = torch.tensor(list(values), dtype=torch.float64).to(self.flat.device, self.flat.dtype)
        return torch.index_select(table, 0, self._copy_index)

    def _constant(self, name: str, values: Sequence[float]) -> Hyper:
        """_per_copy(values), rebuilt only when the values change: momentum, dampening and the betas
        never do, lr once an epoch (measured: see the commit adding it), NAdam's step factors every step."""
        key = tuple(values)
        cached = self._vectors.get(name)
        if cached is None or cached[0] != key:
            cached = self._vectors[name] = (key, self._per_copy(key))
        return cached[1]

    def _chunks(self) -> Iterator[slice]:
        for start in range(0, self.flat.numel(), CHUNK):
            yield slice(start, start + CHUNK)

    @property
    def lr(self) -> list[float]:
        return [h.lr * float(f) for h, f in zip(self.hypers, self.lr_factor)]

    def set_lr_factor(self, factors: Sequence[float] | float) -> None:
        """Scale each copy's base lr (a schedule's factor for this epoch), as LambdaLR does."""
        values = [float(factors)] * self.copies if isinstance(factors, (int, float)) else list(factors)
        self.lr_factor = torch.tensor(values, dtype=torch.float64)

    def _attach_grads(self) -> None:
        for (_, p), view in zip(self.named, self._grad_views):
            p.grad = view

    def zero_grad(self) -> None:
        """Zero the flat gradient (one fill); backward then accumulates into it in place."""
        self.flat_grad.zero_()
        self._attach_grads()

    def _gather_stray_grads(self) -> None:
        """A gradient someone replaced (or set to None) goes back into the flat buffer."""
        for (_, p), view in zip(self.named, self._grad_views):
            grad = p.grad
            if grad is None:
                view.zero_()
            elif grad.data_ptr() != view.data_ptr():
                view.copy_(grad)
            else:
                continue
            p.grad = view

    def _decayed(self, piece: slice, out: torch.Tensor) -> torch.Tensor:
        """This chunk's gradient with L2 weight decay added (as torch: grad + wd * param)."""
        grad, wd = self.flat_grad[piece], _part(self._weight_decay, piece)
        if isinstance(wd, float):
            return torch.add(grad, self.flat[piece], alpha=wd, out=out[: grad.numel()]) if wd != 0 else grad
        return torch.addcmul(grad, self.flat[piece], wd, out=out[: grad.numel()])

    @torch.no_grad()
    def step(self) -> None:
        self._gather_stray_grads()
        self.step_count += 1
        if self.kind == "sgd":
            self._sgd()
        else:
            self._nadam()

    def _scaled_lr(self, copy: int, mult: float) -> float:
        """Copy `copy`'s lr for a parameter with lr multiplier `mult`, rounded as torch's: a group's
        base lr is recipe.lr * mult, and LambdaLR scales the base."""
        return self.hypers[copy].lr * mult * float(self.lr_factor[copy])

    def _shared_lrs(self) -> bool:
        """Whether every copy has the same lr for every parameter (the fused kernel takes one)."""
        mults = {mult for _, (mult, _) in self._decay_runs or []} or {1.0}
        return all(len({self._scaled_lr(g, m) for g in range(self.copies)}) == 1 for m in mults)

    def _sgd_lr(self) -> Hyper:
        """Each element's lr: per copy, and per parameter where multipliers exist (rebuilt once an epoch)."""
        if self._mults is None:
            return self._constant("lr", self.lr)
        key = tuple(self.lr_factor.tolist())
        cached = self._vectors.get("lr_mult")
        if cached is None or cached[0] != key:
            table = [[self._scaled_lr(g, m) for m in row] for g, row in enumerate(self._mults)]
            cached = self._vectors["lr_mult"] = (key, self._expand(table))
        return cached[1]

    def _sgd(self) -> None:
        shared = {(h.momentum, h.dampening, h.nesterov) for h in self.hypers}
        if len(shared) == 1 and self._decay_runs is not None and self._shared_lrs():
            self._fused_sgd(*shared.pop())
            return
        momentum = any(h.momentum != 0 for h in self.hypers)
        hyper = {"lr": self._sgd_lr()}
        if momentum:
            first = "momentum_buffer" not in self.state
            if first:
                self.state["momentum_buffer"] = torch.empty_like(self.flat)
            hyper.update(momentum=self._constant("momentum", [h.momentum for h in self.hypers]),
                         damp=self._constant("damp", [1 - h.dampening if h.momentum != 0 else 1.0 for h in self.hypers]))
            nesterov = {h.nesterov for h in self.hypers}
            if nesterov == {True, False}:
                hyper["mask"] = self._constant("mask", [1.0 if h.nesterov else 0.0 for h in self.hypers])
        scratch = torch.empty(min(CHUNK, self.flat.numel()), dtype=self.flat.dtype, device=self.flat.device)
        for piece in self._chunks():
            grad = self._decayed(piece, scratch)
            if momentum:
                grad = self._momentum(piece, grad, first, {k: _part(v, piece) for k, v in hyper.items()})
            lr = _part(hyper["lr"], piece)
            if isinstance(lr, float):
                self.flat[piece].add_(grad, alpha=-lr)
            else:
                self.flat[piece].addcmul_(grad, lr, value=-1)

    def _fused_sgd(self, momentum: float, dampening: float, nesterov: bool) -> None:
        """Copies that share every setting: torch's fused SGD kernel (the single runs' own) over
        one slice of `flat` per weight-decay value. Measured (1 thread, G = 8, 49-layer highway
        MLP, 2M floats): 9.8 ms per step chunked, 3.3 ms fused (equal to rounding, test)."""
        first = momentum != 0 and "momentum_buffer" not in self.state
        if first:
            self.state["momentum_buffer"] = torch.empty_like(self.flat)
        for piece, (mult, wd) in self._decay_runs or []:
            buffers = [self.state["momentum_buffer"][piece]] if momentum != 0 else []
            torch._fused_sgd_([self.flat[piece]], [self.flat_grad[piece]], buffers, weight_decay=wd,
                              momentum=momentum, lr=self._scaled_lr(0, mult), dampening=dampening,
                              nesterov=nesterov, maximize=False, is_first_step=first)

    def reset_momentum(self, copies: Sequence[int]) -> None:
        """Forget these copies' SGD momentum, as their single runs' reset does (model_tools.reset_momentum).
        All copies: the buffer goes, so the next step starts it from the gradient. Some: their slices
        become 0, and the next step's buffer is momentum * 0 + grad, the same with no dampening
        (archlang.train.grouping refuses dampening there)."""
        buf = self.state.get("momentum_buffer")
        if buf is None or not copies:
            return
        if len(set(copies)) == self.copies:
            del self.state["momentum_buffer"]
            return
        offset, index = 0, list(copies)
        for n in self.sizes:
            buf[offset: offset + n * self.copies].view(self.copies, n)[index] = 0.0
            offset += n * self.copies

    def _momentum(self, piece: slice, grad: torch.Tensor, first: bool, hyper: dict[str, Hyper]) -> torch.Tensor:
        buf = self.state["momentum_buffer"][piece]
        momentum, damp = hyper["momentum"], hyper["damp"]
        if first:
            buf.copy_(grad)
        else:
            # A copy without momentum gets buf = grad, the gradient torch would use for it.
            buf.mul_(momentum)
            buf.add_(grad, alpha=damp) if isinstance(damp, float) else buf.addcmul_(grad, damp)
        nesterov = {h.nesterov for h in self.hypers}
        if nesterov == {False}:
            return buf
        ahead = grad.add(buf, alpha=momentum) if isinstance(momentum, float) else grad.addcmul(buf, momentum)
        if nesterov == {True}:
            return ahead
        return torch.where(hyper["mask"] != 0, ahead, buf)  # type: ignore[operator]

    def _nadam(self) -> None:
        if "exp_avg" not in self.state:
            self.state["exp_avg"] = torch.zeros_like(self.flat)
            self.state["exp_avg_sq"] = torch.zeros_like(self.flat)
            # float32 as torch's: the product is rounded to float32 after every step
            self.state["mu_product"] = torch.ones(self.copies, dtype=torch.float32, device=self.flat.device)
        hyper = self._nadam_hypers()
        if self._fused_nadam is not None:
            factors = [self._fixed_rank("weight_decay", self._weight_decay)]
            factors += [self._fixed_rank(k, hyper[k]) for k in NADAM_FACTORS]
            self._fused_nadam(self.flat, self.flat_grad, self.state["exp_avg"], self.state["exp_avg_sq"], *factors)
            return
        scratch = torch.empty(2, min(CHUNK, self.flat.numel()), dtype=self.flat.dtype, device=self.flat.device)
        for piece in self._chunks():
            self._nadam_chunk(piece, {k: _part(v, piece) for k, v in hyper.items()}, scratch)

    def _nadam_hypers(self) -> dict[str, Hyper]:
        """This step's per-copy NAdam factors, torch's formulas (mu-product updated here)."""
        step = self.step_count
        beta1 = [h.betas[0] for h in self.hypers]
        beta2 = [h.betas[1] for h in self.hypers]
        mu = [b * (1.0 - 0.5 * 0.96 ** (step * h.momentum_decay)) for b, h in zip(beta1, self.hypers)]
        mu_next = [b * (1.0 - 0.5 * 0.96 ** ((step + 1) * h.momentum_decay)) for b, h in zip(beta1, self.hypers)]
        self.state["mu_product"].mul_(torch.tensor(mu, dtype=torch.float32, device=self.flat.device))
        product = self.state["mu_product"].tolist()
        lr = self.lr
        return {"one_minus_b1": self._constant("one_minus_b1", [1 - b for b in beta1]),
                "beta2": self._constant("beta2", beta2), "one_minus_b2": self._constant("one_minus_b2", [1 - b for b in beta2]),
                "correction2": self._per_copy([1 - b**step for b in beta2]),
                "eps": self._constant("eps", [h.eps for h in self.hypers]),
                "grad_step": self._per_copy([-r * (1.0 - m) / (1.0 - p) for r, m, p in zip(lr, mu, product)]),
                "avg_step": self._per_copy([(-r * n) / (1.0 - p * n) for r, n, p in zip(lr, mu_next, product)])}

    def _nadam_chunk(self, piece: slice, hyper: dict[str, Hyper], scratch: torch.Tensor) -> None:
        grad = self._decayed(piece, scratch[0])
        exp_avg, exp_avg_sq = self.state["exp_avg"][piece], self.state["exp_avg_sq"][piece]
        exp_avg.lerp_(grad, hyper["one_minus_b1"])
        exp_avg_sq.mul_(hyper["beta2"])
        one_minus_b2 = hyper["one_minus_b2"]
        if isinstance(one_minus_b2, float):
            exp_avg_sq.addcmul_(grad, grad, value=one_minus_b2)
        else:
            exp_avg_sq.addcmul_(grad * grad, one_minus_b2)
        denom = torch.div(exp_avg_sq, hyper["correction2"], out=scratch[1, : grad.numel()]).sqrt_()
        denom.add_(hyper["eps"])
        self._add_ratio(piece, grad, denom, hyper["grad_step"])
        self._add_ratio(piece, exp_avg, denom, hyper["avg_step"])

    def _add_ratio(self, piece: slice, numerator: torch.Tensor, denom: torch.Tensor, value: Hyper) -> None:
        if isinstance(value, float):
            self.flat[piece].addcdiv_(numerator, denom, value=value)
        else:
            self.flat[piece].addcmul_(numerator / denom, value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safetensors-ready); the hyperparameters come from the recipes. `order` says
        which parameter (by module order) each slice of the flat buffers holds."""
        return {"step": torch.tensor(self.step_count), "lr_factor": self.lr_factor.clone(),
                "order": torch.tensor(self.order, dtype=torch.int64),
                **{name: t.clone() for name, t in self.state.items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """A state without `order` (written before flat was ordered by setting) is in module order."""
        self.step_count = int(state["step"])
        self.lr_factor = state["lr_factor"].to(torch.float64).clone()
        module_order = list(range(len(self.order)))
        saved = state["order"].tolist() if "order" in state else module_order
        if sorted(saved) != module_order:
            raise ValueError(f"the saved optimizer state holds {len(saved)} parameters, this model {len(self.order)}")
        self.state = {name: self._reordered(t.to(self.flat.device), saved) for name, t in state.items()
                      if name not in ("step", "lr_factor", "order")}

    def _reordered(self, tensor: torch.Tensor, saved: list[int]) -> torch.Tensor:
        """A flat buffer laid out in the `saved` order, in this optimizer's; other tensors as they are."""
        if tensor.numel() != self.flat.numel() or saved == self.order:
            return tensor.clone()
        size = dict(zip(self.order, (n * self.copies for n in self.sizes)))
        pieces = dict(zip(saved, tensor.split([size[i] for i in saved])))
        return torch.cat([pieces[i] for i in self.order])

