"""Convolutional highway nets (Srivastava et al. 2015, Table 1 MNIST, Tables 2-3 CIFAR Highway B)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import Conv, Flatten, GlobalAvgPool, Highway, Input, Linear, MaxPool, ReLU, Seq
from archlang.ir.families.common import Classes, Family, Shape, Width


class HighwayCnn(Family):
    kind: Literal["highway_cnn"] = "highway_cnn"
    variant: Literal["mnist", "cifar_b"] = "mnist"
    width: Width = 16
    bias_init: float = -2.0
    classes: Classes = 10
    input: Shape | None = None
    positional: ClassVar[tuple[str, ...] | None] = ("variant", "width")
    doc: ClassVar[str] = "convolutional highway nets (Highway Table 1: MNIST; Tables 2-3: CIFAR Highway B)"

    def _highway(self, width: int) -> Highway:
        return Highway(h=Conv(out=width, bias=True), bias_init=self.bias_init)

    def _plain(self, width: int, kernel: int = 3, padding: int | None = None) -> list[IRNode]:
        return [Conv(out=width, kernel=kernel, padding=padding, bias=True), ReLU()]

    def expand(self, gate_k: float | None = None) -> Seq:
        if gate_k is not None:
            raise FieldProblem(None, "a highway net has no residual blocks to gate",
                               hint="gated(...) applies to wrn, preact_resnet, resnet and mlp")
        if self.variant == "mnist":
            w = self.width
            items: list[IRNode] = [Input(shape=self.input or [1, 28, 28]), *self._plain(w, 5, 0)]
            items += [self._highway(w) for _ in range(2)] + [MaxPool(kernel=3, stride=2, ceil=True)]
            items += [self._highway(w) for _ in range(3)] + [MaxPool(kernel=3, stride=2, ceil=True)]
            items += [self._highway(w) for _ in range(3)] + [MaxPool(kernel=2, stride=2), Flatten()]
        else:
            items = [Input(shape=self.input or [3, 32, 32])]
            for group, (width, count) in enumerate(((32, 4), (80, 5), (128, 5))):
                if group > 0:
                    items.append(MaxPool(kernel=2))
                items += self._plain(width) + [self._highway(width) for _ in range(count)]
            items += self._plain(100, 1) + [GlobalAvgPool()]
        items.append(Linear(out=self.classes))
        return self._stamp(Seq(items=items))  # type: ignore[return-value]

    @model_validator(mode="after")
    def _width_rule(self) -> HighwayCnn:
        if self.variant == "cifar_b" and self.width != 16:
            raise FieldProblem("width", "Highway B has the published widths 32/80/128; width applies to mnist only",
                               hint="drop the width: highway_cnn(cifar_b)")
        return self
