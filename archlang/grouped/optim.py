"""One optimizer step for all G copies, with per-copy hyperparameters.

The arithmetic is torch.optim's single-tensor SGD and NAdam (torch/optim/sgd.py, nadam.py: L2
weight decay added to the gradient, SGD's first momentum buffer a copy of the gradient, NAdam's
mu-product kept in float32), applied to ONE flat tensor holding every parameter of every copy:
a handful of kernels per step instead of several per parameter. A hyperparameter the copies
share is a Python scalar, as in torch; one they do not is a per-element vector (each copy's
value repeated over its slice of every parameter), so copy g's update is its single run's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class CopyHyper:
    """One copy's optimizer settings; field names follow archlang's recipes (see from_recipe)."""

    optimizer: Literal["sgd", "nadam"]
    lr: float
    momentum: float = 0.0  # SGD momentum
    dampening: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)  # NAdam
    eps: float = 1e-8
    momentum_decay: float = 0.004  # NAdam's; Keras' schedule_decay, as archlang's trainer uses
    weight_decay: float = 0.0
    no_decay: frozenset[str] = field(default_factory=frozenset)  # single-model parameter names without decay

    @classmethod
    def from_recipe(cls, recipe: Any, no_decay: Collection[str] = ()) -> CopyHyper:
        """Read the fields of an archlang recipe (any object with these attributes)."""
        return cls(optimizer=recipe.optimizer, lr=recipe.lr, momentum=recipe.momentum, dampening=recipe.dampening,
                   nesterov=recipe.nesterov, betas=tuple(recipe.betas), eps=recipe.eps,
                   weight_decay=recipe.weight_decay, no_decay=frozenset(no_decay))


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
        self.sizes = [p[0].numel() for _, p in self.named]
        self.flat = torch.cat([p.detach().reshape(-1) for _, p in self.named])
        offset = 0
        for _, p in self.named:  # the module keeps its Parameters; their storage moves into `flat`
            p.data = self.flat[offset: offset + p.numel()].view_as(p)
            offset += p.numel()
        self.lr_factor = torch.ones(self.copies, dtype=torch.float64)
        self.step_count = 0
        self.state: dict[str, torch.Tensor] = {}
        self._weight_decay = self._expand([[0.0 if n in h.no_decay else h.weight_decay for n, _ in self.named]
                                           for h in self.hypers])

    def _expand(self, values: Sequence[Sequence[float]]) -> float | torch.Tensor:
        """values[g][j] for copy g, parameter j: a scalar when all agree, else a per-element vector."""
        distinct = {v for row in values for v in row}
        if len(distinct) == 1:
            return float(distinct.pop())
        table = torch.tensor(values, dtype=torch.float64).to(self.flat.device, self.flat.dtype)
        return torch.cat([table[:, j, None].expand(-1, n).reshape(-1) for j, n in enumerate(self.sizes)])

    def _per_copy(self, values: Sequence[float]) -> float | torch.Tensor:
        return self._expand([[v] * len(self.sizes) for v in values])

    @property
    def lr(self) -> list[float]:
        return [h.lr * float(f) for h, f in zip(self.hypers, self.lr_factor)]

    def set_lr_factor(self, factors: Sequence[float] | float) -> None:
        """Scale each copy's base lr (a schedule's factor for this epoch), as LambdaLR does."""
        values = [float(factors)] * self.copies if isinstance(factors, (int, float)) else list(factors)
        self.lr_factor = torch.tensor(values, dtype=torch.float64)

    def zero_grad(self) -> None:
        for _, p in self.named:
            p.grad = None

    def _gradient(self) -> torch.Tensor:
        grad = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype)
                          for _, p in self.named])
        wd = self._weight_decay
        if isinstance(wd, float):
            return grad.add(self.flat, alpha=wd) if wd != 0 else grad
        return grad.addcmul_(self.flat, wd)

    @torch.no_grad()
    def step(self) -> None:
        grad = self._gradient()
        self.step_count += 1
        if self.kind == "sgd":
            self._sgd(grad)
        else:
            self._nadam(grad)

    def _sgd(self, grad: torch.Tensor) -> None:
        if any(h.momentum != 0 for h in self.hypers):
            grad = self._momentum(grad)
        self._apply(grad, self._per_copy(self.lr))

    def _momentum(self, grad: torch.Tensor) -> torch.Tensor:
        momentum = self._per_copy([h.momentum for h in self.hypers])
        buf = self.state.get("momentum_buffer")
        if buf is None:
            buf = self.state["momentum_buffer"] = grad.clone()
        else:
            # A copy without momentum gets buf = grad, the gradient torch would use for it.
            damp = self._per_copy([1 - h.dampening if h.momentum != 0 else 1.0 for h in self.hypers])
            buf.mul_(momentum)
            buf.add_(grad, alpha=damp) if isinstance(damp, float) else buf.addcmul_(grad, damp)
        nesterov = {h.nesterov for h in self.hypers}
        if nesterov == {False}:
            return buf
        ahead = grad.add(buf, alpha=momentum) if isinstance(momentum, float) else grad.addcmul(buf, momentum)
        if nesterov == {True}:
            return ahead
        mask = self._per_copy([1.0 if h.nesterov else 0.0 for h in self.hypers])
        return torch.where(mask != 0, ahead, buf)  # type: ignore[operator]

    def _nadam(self, grad: torch.Tensor) -> None:
        if "exp_avg" not in self.state:
            self.state["exp_avg"] = torch.zeros_like(self.flat)
            self.state["exp_avg_sq"] = torch.zeros_like(self.flat)
            # float32 as torch's: the product is rounded to float32 after every step
            self.state["mu_product"] = torch.ones(self.copies, dtype=torch.float32, device=self.flat.device)
        step, state = self.step_count, self.state
        beta1 = [h.betas[0] for h in self.hypers]
        beta2 = [h.betas[1] for h in self.hypers]
        mu = [b * (1.0 - 0.5 * 0.96 ** (step * h.momentum_decay)) for b, h in zip(beta1, self.hypers)]
        mu_next = [b * (1.0 - 0.5 * 0.96 ** ((step + 1) * h.momentum_decay)) for b, h in zip(beta1, self.hypers)]
        state["mu_product"].mul_(torch.tensor(mu, dtype=torch.float32, device=self.flat.device))
        product = state["mu_product"].tolist()
        state["exp_avg"].lerp_(grad, self._per_copy([1 - b for b in beta1]))
        one_minus_b2 = self._per_copy([1 - b for b in beta2])
        state["exp_avg_sq"].mul_(self._per_copy(beta2))
        if isinstance(one_minus_b2, float):
            state["exp_avg_sq"].addcmul_(grad, grad, value=one_minus_b2)
        else:
            state["exp_avg_sq"].addcmul_(grad * grad, one_minus_b2)
        denom = state["exp_avg_sq"].div(self._per_copy([1 - b**step for b in beta2])).sqrt()
        denom.add_(self._per_copy([h.eps for h in self.hypers]))
        lr = self.lr
        self._apply_ratio(grad, denom, [-r * (1.0 - m) / (1.0 - p) for r, m, p in zip(lr, mu, product)])
        self._apply_ratio(state["exp_avg"], denom,
                          [(-r * n) / (1.0 - p * n) for r, n, p in zip(lr, mu_next, product)])

    def _apply_ratio(self, numerator: torch.Tensor, denom: torch.Tensor, values: list[float]) -> None:
        value = self._per_copy(values)
        if isinstance(value, float):
            self.flat.addcdiv_(numerator, denom, value=value)
        else:
            self.flat.addcmul_(numerator / denom, value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safetensors-ready); the hyperparameters come from the recipes."""
        return {"step": torch.tensor(self.step_count), "lr_factor": self.lr_factor.clone(),
                **{name: t.clone() for name, t in self.state.items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.step_count = int(state["step"])
        self.lr_factor = state["lr_factor"].to(torch.float64).clone()
        self.state = {name: t.to(self.flat.device).clone() for name, t in state.items()
                      if name not in ("step", "lr_factor")}

    def _apply(self, update: torch.Tensor, lr: float | torch.Tensor) -> None:
        if isinstance(lr, float):
            self.flat.add_(update, alpha=-lr)
        else:
            self.flat.addcmul_(update, lr, value=-1)
