"""Families: the papers' networks as one call each, expanded into core nodes.

Each family validates its own arguments (depth rules, widths) and `expand()` returns a
`seq(input(...), ...)` of core nodes; shapes and counts are then inferred on that.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.core import (
    BatchNorm,
    Conv,
    Dirac,
    Dropout,
    Flatten,
    Gated,
    GlobalAvgPool,
    Highway,
    Input,
    Kernel,
    Linear,
    MaxPool,
    NCReLU,
    PosInt,
    Probability,
    ReLU,
    Residual,
    Seq,
    Tanh,
)

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


class Mlp(Family):
    kind: Literal["mlp"] = "mlp"
    depth: Depth
    width: Width = 50
    block: Literal["plain", "residual", "highway"] | Gated = "plain"
    bn: bool = True
    act: Literal["relu", "tanh"] = "relu"
    bias_init: float = -2.0
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
        items: list[IRNode] = [self._input(), Flatten(), *self._layer()]
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


FAMILIES: tuple[type[Family], ...] = (Wrn, PreactResnet, Resnet, Diracnet, Mlp, HighwayCnn)
