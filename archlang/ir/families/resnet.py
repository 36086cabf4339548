"""ImageNet ResNets (He et al. 2016a) with torchvision's layout."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import BatchNorm, Conv, GlobalAvgPool, Linear, MaxPool, ReLU, Residual, Seq
from archlang.ir.families.common import Classes, Family, Shape, _maybe_gate

_RESNET_LAYOUT = {18: ([2, 2, 2, 2], False), 34: ([3, 4, 6, 3], False), 50: ([3, 4, 6, 3], True),
                  101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True)}


class Resnet(Family):
    kind: Literal["resnet"] = "resnet"
    depth: Literal[18, 34, 50, 101, 152] = 18
    classes: Classes = 1000
    input: Shape = Field(default_factory=lambda: [3, 224, 224])
    positional: ClassVar[tuple[str, ...] | None] = ("depth",)
    doc: ClassVar[str] = "ImageNet ResNet (He et al. 2016a) with torchvision's layout and parameter count"

    @field_validator("depth", mode="before")
    @classmethod
    def _integer_depth(cls, depth: object) -> object:
        # Literal[18, ...] would take 18.0 (equal, same hash); a depth is written as an integer.
        if isinstance(depth, float):
            raise FieldProblem("depth", f"depth must be an integer, got {depth!r}",
                               hint=f"write {int(depth)} without a decimal point" if depth.is_integer() else None)
        return depth

    def _block(self, width: int, stride: int, in_width: int, bottleneck: bool) -> Residual:
        out = width * 4 if bottleneck else width
        if bottleneck:
            body: list[IRNode] = [Conv(out=width, kernel=1), BatchNorm(), ReLU(), Conv(out=width, stride=stride),
                                  BatchNorm(), ReLU(), Conv(out=out, kernel=1), BatchNorm()]
        else:
            body = [Conv(out=width, stride=stride), BatchNorm(), ReLU(), Conv(out=width), BatchNorm()]
        needs_projection = stride != 1 or in_width != out
        shortcut: str | IRNode = (Seq(items=[Conv(out=out, kernel=1, stride=stride), BatchNorm()])
                                  if needs_projection else "identity")
        return Residual(body=Seq(items=body), shortcut=shortcut, post=ReLU())

    def expand(self, gate_k: float | None = None) -> Seq:
        counts, bottleneck = _RESNET_LAYOUT[self.depth]
        items: list[IRNode] = [self._input(), Conv(out=64, kernel=7, stride=2), BatchNorm(), ReLU(),
                               MaxPool(kernel=3, stride=2, padding=1)]
        in_width = 64
        for group, count in enumerate(counts):
            width = 64 * 2**group
            for i in range(count):
                stride = 2 if (group > 0 and i == 0) else 1
                items.append(_maybe_gate(self._block(width, stride, in_width, bottleneck), gate_k))
                in_width = width * 4 if bottleneck else width
        items += [GlobalAvgPool(), Linear(out=self.classes)]
        return self._stamp(Seq(items=items))  # type: ignore[return-value]
