"""Pre-activation ResNets for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import BatchNorm, Conv, GlobalAvgPool, Linear, ReLU, Residual, Seq
from archlang.ir.families.common import Classes, Depth, Family, Shape, Width, _bn_relu, _groups_of, _maybe_gate


class PreactResnet(Family):
    kind: Literal["preact_resnet"] = "preact_resnet"
    depth: Depth
    bottleneck: bool = False
    shortcut: Literal["projection", "zeropad"] = "projection"
    width: Width = 16
    classes: Classes = 10
    input: Shape = Field(default_factory=lambda: [3, 32, 32])
    positional: ClassVar[tuple[str, ...] | None] = ("depth",)
    doc: ClassVar[str] = "pre-activation ResNet for CIFAR (He et al. 2016, as quoted by WRN Table 5, Gated ResNet Table 3)"

    @model_validator(mode="after")
    def _depth_rule(self) -> PreactResnet:
        if self.bottleneck:
            _groups_of(self.depth, 2, 9, "depth", "9N + 2 (bottleneck)")
        else:
            _groups_of(self.depth, 2, 6, "depth", "6N + 2")
        if self.bottleneck and self.shortcut == "zeropad":
            raise FieldProblem("shortcut", "bottleneck ResNets use projection shortcuts")
        return self

    def _block(self, width: int, stride: int, first: bool) -> Residual:
        if self.bottleneck:
            mid = width // 4
            # The stride sits on the first 1x1, as in resnet-pre-act.lua (KaimingHe/resnet-1k-layers).
            body: list[IRNode] = [Conv(out=mid, kernel=1, stride=stride), BatchNorm(), ReLU(), Conv(out=mid),
                                  BatchNorm(), ReLU(), Conv(out=width, kernel=1)]
        else:
            body = [Conv(out=width, stride=stride), BatchNorm(), ReLU(), Conv(out=width)]
        shortcut = "auto" if self.shortcut == "projection" else "zeropad"
        # He et al.'s first block follows the stem's BN-ReLU and has no pre-activation of its own.
        return Residual(body=Seq(items=body), pre=None if first else _bn_relu(), shortcut=shortcut)

    def expand(self, gate_k: float | None = None) -> Seq:
        per_group = (self.depth - 2) // (9 if self.bottleneck else 6)
        scale = 4 if self.bottleneck else 1
        items: list[IRNode] = [self._input(), Conv(out=self.width), BatchNorm(), ReLU()]
        for group, stride in enumerate((1, 2, 2)):
            width = self.width * scale * (2**group)
            for i in range(per_group):
                block = self._block(width, stride if i == 0 else 1, first=(group == 0 and i == 0))
                items.append(_maybe_gate(block, gate_k))
        items += [BatchNorm(), ReLU(), GlobalAvgPool(), Linear(out=self.classes)]
        return self._stamp(Seq(items=items))  # type: ignore[return-value]
