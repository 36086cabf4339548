"""What every family shares: the Family base, the WRN block type B(...), argument types and helpers."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import BatchNorm, Gated, Input, Kernel, PosInt, ReLU, Residual, Seq

Classes = Annotated[int, Field(gt=0, le=100_000)]
Width = Annotated[int, Field(gt=0, le=100_000)]
# Families refuse depths that would expand into tens of thousands of nodes before expanding anything
# (expansion and shape inference cost about 0.1 ms a node). The deepest network of the papers is
# ResNet-1202; twice the papers' deepest leaves room for experiments and keeps compiling under a second.
MAX_DEPTH = 2_000
Depth = Annotated[int, Field(gt=0, le=MAX_DEPTH)]
Shape = list[PosInt]


class BlockType(IRNode):
    """B(3,3), B(1,3,1), ...: the kernel sizes of the convolutions of one WRN block (WRN sec. 2.1)."""

    kind: Literal["B"] = "B"
    kernels: list[Kernel]
    variadic: ClassVar[str | None] = "kernels"
    doc: ClassVar[str] = "WRN block type B(M): kernel sizes of the convolutions in a block (WRN sec. 2.1)"

    @field_validator("kernels")
    @classmethod
    def _odd(cls, kernels: list[int]) -> list[int]:
        if not kernels:
            raise FieldProblem("kernels", "a block type needs at least one kernel size", hint="e.g. B(3,3)")
        if len(kernels) > 16:
            raise FieldProblem("kernels", f"a block of {len(kernels)} convolutions is more than the 16 allowed")
        for size in kernels:
            if size % 2 == 0:
                raise FieldProblem("kernels", f"kernel size {size} is even; 'same' padding needs odd sizes",
                                   hint=f"use {size - 1} or {size + 1}")
        return kernels


class Family(IRNode):
    """A paper's network; `gate_k` is set when the whole family is wrapped in gated(...)."""

    def expand(self, gate_k: float | None = None) -> Seq:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stamp(self, node: IRNode) -> IRNode:
        """Give every expanded node this call's span, so shape errors point at the family."""
        node.at(self.span)
        for value in node.__dict__.values():
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, IRNode) and child.span is None:
                    self._stamp(child)
        return node

    def _input(self) -> Input:
        return Input(shape=list(self.input))


def _maybe_gate(block: Residual, gate_k: float | None) -> IRNode:
    return Gated(block=block, k_init=gate_k) if gate_k is not None else block


def _bn_relu() -> Seq:
    return Seq(items=[BatchNorm(), ReLU()])


def _nearest(valid_step: int, offset: int, value: int) -> str:
    below = max(offset + valid_step, offset + ((value - offset) // valid_step) * valid_step)
    return f"{below}" if below >= value else f"{below} or {below + valid_step}"


def _groups_of(depth: int, offset: int, per_block: int, name: str, formula: str) -> int:
    if depth < offset + per_block or (depth - offset) % per_block:
        raise FieldProblem("depth", f"depth {depth} is not {formula} for a whole number N >= 1",
                           hint=f"nearest valid depth: {_nearest(per_block, offset, depth)}")
    return (depth - offset) // per_block
