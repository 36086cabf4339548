"""WRN-depth-k: wide residual networks (Zagoruyko & Komodakis 2016, sec. 2, Table 1)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import BatchNorm, Conv, Dropout, Gated, GlobalAvgPool, Linear, Probability, ReLU, Residual, Seq
from archlang.ir.families.common import (
    MAX_DEPTH,
    BlockType,
    Classes,
    Depth,
    Family,
    Shape,
    Width,
    _bn_relu,
    _groups_of,
    _maybe_gate,
)


class Wrn(Family):
    kind: Literal["wrn"] = "wrn"
    depth: Depth | None = None
    k: Annotated[int, Field(gt=0, le=1000)] = 1
    block: BlockType | Gated = Field(default_factory=lambda: BlockType(kernels=[3, 3]))
    dropout: Probability = 0.0
    n: Annotated[int, Field(gt=0, le=MAX_DEPTH)] | None = None
    width: Width = 16
    classes: Classes = 10
    input: Shape = Field(default_factory=lambda: [3, 32, 32])
    positional: ClassVar[tuple[str, ...] | None] = ("depth", "k")
    doc: ClassVar[str] = "wide residual network WRN-depth-k (WRN Table 1, sec. 2)"

    @field_validator("block")
    @classmethod
    def _block_type(cls, block: BlockType | Gated) -> BlockType | Gated:
        if isinstance(block, Gated) and not isinstance(block.block, BlockType):
            raise FieldProblem("block", "wrn's block is a block type: B(3,3) or gated(B(3,3))",
                               hint="write block=gated(B(3,3))")
        return block

    @model_validator(mode="after")
    def _depth_rule(self) -> Wrn:
        convs = len(self.kernels)
        if self.n is None and self.depth is None:
            raise FieldProblem("depth", "wrn needs depth= (or n=, the number of blocks per group)",
                               hint="e.g. wrn(depth=28, k=10)")
        if self.n is None:
            _groups_of(self.depth, 4, 3 * convs, "depth",
                       f"{3 * convs}N + 4" + ("" if convs == 2 else f" (blocks of {convs} convolutions)"))
        elif self.depth is not None and self.depth != 3 * convs * self.n + 4:
            raise FieldProblem("n", f"depth={self.depth} and n={self.n} disagree: n={self.n} gives depth "
                               f"{3 * convs * self.n + 4}", hint="give only one of depth= and n=")
        elif 3 * convs * self.n + 4 > MAX_DEPTH:
            raise FieldProblem("n", f"n={self.n} with blocks of {convs} convolutions gives depth "
                               f"{3 * convs * self.n + 4}, more than the {MAX_DEPTH} allowed",
                               hint=f"use n <= {(MAX_DEPTH - 4) // (3 * convs)}")
        return self

    @property
    def kernels(self) -> list[int]:
        inner = self.block.block if isinstance(self.block, Gated) else self.block
        return inner.kernels  # type: ignore[union-attr]

    @property
    def blocks_per_group(self) -> int:
        return self.n if self.n is not None else (self.depth - 4) // (3 * len(self.kernels))

    def _block(self, width: int, stride: int) -> Residual:
        body: list[IRNode] = []
        for i, size in enumerate(self.kernels):
            if i > 0:
                body += [BatchNorm(), ReLU()] + ([Dropout(p=self.dropout)] if self.dropout > 0 else [])
            body.append(Conv(out=width, kernel=size, stride=stride if i == 0 else 1))
        # The 1x1 projection sees the pre-activated input, as in the authors' code.
        return Residual(body=Seq(items=body), pre=_bn_relu(), shortcut="auto")

    def expand(self, gate_k: float | None = None) -> Seq:
        if isinstance(self.block, Gated):
            gate_k = self.block.k_init
        items: list[IRNode] = [self._input(), Conv(out=self.width)]
        for group, stride in enumerate((1, 2, 2)):
            width = self.width * (2**group) * self.k
            for i in range(self.blocks_per_group):
                items.append(_maybe_gate(self._block(width, stride if i == 0 else 1), gate_k))
        items += [BatchNorm(), ReLU(), GlobalAvgPool(), Linear(out=self.classes)]
        return self._stamp(Seq(items=items))  # type: ignore[return-value]
