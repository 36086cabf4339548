"""DiracNets: deep nets without skip connections (Zagoruyko & Komodakis 2017, Table 1)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import BatchNorm, Conv, Dirac, GlobalAvgPool, Input, Linear, MaxPool, NCReLU, ReLU, Seq
from archlang.ir.families.common import MAX_DEPTH, Classes, Depth, Family, Shape, _groups_of


class Diracnet(Family):
    kind: Literal["diracnet"] = "diracnet"
    depth: Depth
    k: Annotated[float, Field(gt=0, le=1000)] = 1.0
    dataset: Literal["cifar", "imagenet"] = "cifar"
    groups: list[Annotated[int, Field(gt=0, le=MAX_DEPTH // 2)]] | None = None
    a_init: float = 5.0
    b_init: float = 1e-3
    classes: Classes | None = None
    input: Shape | None = None
    positional: ClassVar[tuple[str, ...] | None] = ("depth", "k")
    doc: ClassVar[str] = "DiracNet-depth-k without skip connections (DiracNets Table 1; authors' code before 'v2')"

    @model_validator(mode="after")
    def _layout(self) -> Diracnet:
        if self.dataset == "cifar":
            if self.groups is not None and len(self.groups) != 3:
                raise FieldProblem("groups", "a CIFAR DiracNet has 3 groups")
            if self.groups is None:
                _groups_of(self.depth, 4, 6, "depth", "6N + 4")
        else:
            if self.groups is not None and len(self.groups) != 4:
                raise FieldProblem("groups", "an ImageNet DiracNet has 4 groups")
            if self.groups is None and self.depth not in (18, 34):
                raise FieldProblem("depth", f"no ImageNet DiracNet layout for depth {self.depth}",
                                   hint="use depth 18 or 34, or give groups=[...] (blocks of 2 layers per group)")
        if self.groups is not None and 2 * sum(self.groups) > MAX_DEPTH:
            raise FieldProblem("groups", f"groups={self.groups} give {2 * sum(self.groups)} layers, more than the "
                               f"{MAX_DEPTH} allowed")
        for name in ("k",):
            if not float(self.k * 16).is_integer():
                raise FieldProblem(name, f"k={self.k} does not give whole channel counts (16k = {16 * self.k})",
                                   hint=f"use a multiple of 1/16, e.g. k={max(1, round(16 * self.k)) / 16:g}")
        return self

    def _widths(self, base: int) -> list[int]:
        return [round(base * self.k * 2**g) for g in range(3 if self.dataset == "cifar" else 4)]

    def _layers(self) -> list[int]:
        if self.groups is not None:
            return [2 * g for g in self.groups]
        if self.dataset == "cifar":
            return [2 * ((self.depth - 4) // 6)] * 3
        # The paper's DiracNet-34 used [3,4,6,5] blocks (its 15.5M and 34.8M count them).
        return [2 * g for g in ({18: [2, 2, 2, 2], 34: [3, 4, 6, 5]}[self.depth])]

    def _dirac_layer(self, width: int) -> Seq:
        conv = Conv(out=width)
        return Seq(items=[NCReLU(), Dirac(conv=conv, a_init=self.a_init, b_init=self.b_init), BatchNorm()])

    def expand(self, gate_k: float | None = None) -> Seq:
        if gate_k is not None:
            raise FieldProblem(None, "a DiracNet has no residual blocks to gate",
                               hint="gated(...) applies to wrn, preact_resnet, resnet and mlp")
        imagenet = self.dataset == "imagenet"
        shape = self.input or ([3, 224, 224] if imagenet else [3, 32, 32])
        classes = self.classes or (1000 if imagenet else 10)
        widths = self._widths(64 if imagenet else 16)
        if imagenet:
            items: list[IRNode] = [Input(shape=shape), Conv(out=widths[0], kernel=7, stride=2), BatchNorm(),
                                   MaxPool(kernel=3, stride=2, padding=1)]
        else:
            items = [Input(shape=shape), Conv(out=widths[0]), BatchNorm(), ReLU()]
        for group, (width, layers) in enumerate(zip(widths, self._layers())):
            if group > 0:
                items.append(MaxPool(kernel=2))
            items += [self._dirac_layer(width) for _ in range(layers)]
        # The paper's code (before "v2") pools the last BN output directly; the final ReLU came with v2.
        items += [GlobalAvgPool(), Linear(out=classes)]
        return self._stamp(Seq(items=items))  # type: ignore[return-value]
