"""Convolutional highway nets (Srivastava et al. 2015, Table 1 MNIST, Tables 2-3 CIFAR Highway B)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import Conv, Dropout, Flatten, GlobalAvgPool, Highway, Input, Linear, MaxPool, ReLU, Seq
from archlang.ir.families.common import Classes, Family, Shape, Width


class HighwayCnn(Family):
    kind: Literal["highway_cnn"] = "highway_cnn"
    variant: Literal["mnist", "cifar_b"] = "mnist"
    width: Width = 16
    bias_init: float = -2.0
    classes: Classes = 10
    input: Shape | None = None
    # The prototxts' Dropout layers (drop1-drop4); false: the nets without them, as before.
    dropout: bool = False
    # Highway B's head: Table 3's (and the prototxts') 1x1 conv + average pool, or Table 2's
    # "fully connected layer" (assumed: the 8x8x128 map flattened into the classifier).
    head: Literal["conv", "fc"] = "conv"
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
        items = self._mnist() if self.variant == "mnist" else self._cifar_b()
        items.append(Linear(out=self.classes))
        return self._stamp(Seq(items=items))  # type: ignore[return-value]

    def _drop(self, p: float) -> list[IRNode]:
        return [Dropout(p=p)] if self.dropout else []

    def _mnist(self) -> list[IRNode]:
        """[mnist] mnist_network.prototxt; drop1-drop4: 0.2 on the input, 0.3/0.4/0.5 after the pools."""
        w = self.width
        items: list[IRNode] = [Input(shape=self.input or [1, 28, 28]), *self._drop(0.2), *self._plain(w, 5, 0)]
        items += [self._highway(w) for _ in range(2)] + [MaxPool(kernel=3, stride=2, ceil=True), *self._drop(0.3)]
        items += [self._highway(w) for _ in range(3)] + [MaxPool(kernel=3, stride=2, ceil=True), *self._drop(0.4)]
        items += [self._highway(w) for _ in range(3)] + [MaxPool(kernel=2, stride=2), *self._drop(0.5), Flatten()]
        return items

    def _cifar_b(self) -> list[IRNode]:
        """[cifar] cifar10_network.prototxt; drop1-drop4: 0.2 on the input, after both pools, before the classifier."""
        items: list[IRNode] = [Input(shape=self.input or [3, 32, 32]), *self._drop(0.2)]
        for group, (width, count) in enumerate(((32, 4), (80, 5), (128, 5))):
            if group > 0:
                items += [MaxPool(kernel=2), *self._drop(0.2)]
            items += self._plain(width) + [self._highway(width) for _ in range(count)]
        if self.head == "conv":
            return items + self._plain(100, 1) + [GlobalAvgPool(), *self._drop(0.2)]
        return items + [Flatten(), *self._drop(0.2)]

    @model_validator(mode="after")
    def _width_rule(self) -> HighwayCnn:
        if self.variant == "cifar_b" and self.width != 16:
            raise FieldProblem("width", "Highway B has the published widths 32/80/128; width applies to mnist only",
                               hint="drop the width: highway_cnn(cifar_b)")
        if self.variant == "mnist" and self.head != "conv":
            raise FieldProblem("head", "head applies to variant cifar_b (Highway B's Table 2 and 3 heads)",
                               hint="drop the head: highway_cnn(mnist, ...)")
        return self
