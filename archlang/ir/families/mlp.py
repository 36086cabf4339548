"""Fully-connected MNIST nets: plain, residual, gated and highway (Gated ResNet sec. 3.1; Highway sec. 3.1)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import BatchNorm, Flatten, Gated, Highway, Linear, ReLU, Residual, Seq, Tanh
from archlang.ir.families.common import Classes, Depth, Family, Shape, Width, _maybe_gate


class Mlp(Family):
    kind: Literal["mlp"] = "mlp"
    depth: Depth
    width: Width = 50
    block: Literal["plain", "residual", "highway"] | Gated = "plain"
    bn: bool = True
    act: Literal["relu", "tanh"] = "relu"
    bias_init: float = -2.0
    # The 784 -> width input layer: "layer" is Dot-BN-act like every middle layer (CONVENTIONS.md's
    # reading); "linear" is the Dot alone, what Keras' Dense(width) gives without an activation
    # argument (Gated ResNet sec. 3.1 calls it "a linear layer"; issue 12's first-layer hypothesis).
    first: Literal["layer", "linear"] = "layer"
    classes: Classes = 10
    input: Shape = Field(default_factory=lambda: [1, 28, 28])
    positional: ClassVar[tuple[str, ...] | None] = ("depth", "width")
    doc: ClassVar[str] = "fully-connected MNIST nets (Gated ResNet sec. 3.1; Highway sec. 3.1)"

    @model_validator(mode="after")
    def _block_rule(self) -> Mlp:
        kind = self.block_kind
        if isinstance(self.block, Gated) and self.block.block not in ("residual", "plain"):
            raise FieldProblem("block", "mlp's gated block is gated(residual) or gated(plain)")
        if kind == "residual" and self.depth % 2:
            raise FieldProblem("depth", f"a residual mlp pairs its {self.depth} middle layers into blocks: "
                               "depth must be even", hint=f"use depth={self.depth + 1}")
        if kind == "highway" and self.bn:
            raise FieldProblem("bn", "the Highway paper's FC nets have no batchnorm", hint="add bn=false")
        return self

    @property
    def block_kind(self) -> str:
        return self.block.block if isinstance(self.block, Gated) else self.block  # type: ignore[return-value]

    def _layer(self) -> list[IRNode]:
        act = ReLU() if self.act == "relu" else Tanh()
        return [Linear(out=self.width)] + ([BatchNorm()] if self.bn else []) + [act]

    def expand(self, gate_k: float | None = None) -> Seq:
        if isinstance(self.block, Gated):
            gate_k = self.block.k_init
        if gate_k is not None and self.block_kind == "highway":
            raise FieldProblem(None, "an mlp of highway layers has no residual blocks to gate",
                               hint="gate block=residual or block=plain: gated(mlp(depth=10, block=residual))")
        first = self._layer() if self.first == "layer" else [Linear(out=self.width)]
        items: list[IRNode] = [self._input(), Flatten(), *first]
        kind = self.block_kind
        if kind == "plain":
            for _ in range(self.depth):
                layer = Seq(items=self._layer())
                items.append(Gated(block=layer, k_init=gate_k) if gate_k is not None else layer)
        elif kind == "residual":
            for _ in range(self.depth // 2):
                # Pairs of Dot-BN-ReLU layers around an identity shortcut: u = g(k)*f(x) + x (sec. 3.1, eq. 1).
                body = self._layer() + self._layer()
                items.append(_maybe_gate(Residual(body=Seq(items=body), shortcut="identity"), gate_k))
        else:
            items += [Highway(h=Linear(out=self.width), bias_init=self.bias_init, act=self.act)
                      for _ in range(self.depth)]
        items.append(Linear(out=self.classes))
        return self._stamp(Seq(items=items))  # type: ignore[return-value]
