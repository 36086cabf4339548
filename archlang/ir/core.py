"""Core nodes: the layers and combinators every network, family or hand-written, expands into."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator

from archlang.ir.base import FieldProblem, IRNode

# Containers hold `CoreNode` (the union at the end of this file); gated(...) may also wrap a family, so it
# holds `AnyNode`, which archlang.ir.nodes builds with the family registry and uses to complete these
# models. This file imports no other node file.

PosInt = Annotated[int, Field(gt=0, le=1_000_000)]
NonNegInt = Annotated[int, Field(ge=0, le=1_000_000)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
# Repeats are capped so that an absurd count is refused before anything is expanded.
RepeatCount = Annotated[int, Field(gt=0, le=10_000)]
# Convolution kernels: the papers use 1 to 7 (AlexNet-era stems 11); 64 leaves room without
# letting a typo such as kernel=99999 count 10^10 weights per filter.
Kernel = Annotated[int, Field(gt=0, le=64)]


class Input(IRNode):
    kind: Literal["input"] = "input"
    shape: list[PosInt]
    variadic: ClassVar[str | None] = "shape"
    doc: ClassVar[str] = "declares the input shape: input(C, H, W) for images, input(F) for vectors"

    @field_validator("shape")
    @classmethod
    def _rank(cls, shape: list[int]) -> list[int]:
        if len(shape) not in (1, 3):
            raise FieldProblem("shape", f"an input is (C, H, W) or (F,), got {len(shape)} numbers",
                               hint="e.g. input(3, 32, 32) for CIFAR, input(1, 28, 28) for MNIST")
        return shape


class Conv(IRNode):
    kind: Literal["conv"] = "conv"
    out: PosInt
    kernel: Kernel = 3
    stride: PosInt = 1
    padding: NonNegInt | None = None
    bias: bool = False
    groups: PosInt = 1
    dilation: Annotated[int, Field(gt=0, le=64)] = 1
    doc: ClassVar[str] = ("2-D convolution; padding defaults to dilation*(kernel//2) ('same' at stride 1); "
                          "groups=C_in is depthwise")

    @property
    def pad(self) -> int:
        return self.dilation * (self.kernel // 2) if self.padding is None else self.padding

    @property
    def reach(self) -> int:
        """The pixels one output sees along each axis: the dilated kernel."""
        return self.dilation * (self.kernel - 1) + 1


class Linear(IRNode):
    kind: Literal["linear"] = "linear"
    out: PosInt
    bias: bool = True
    doc: ClassVar[str] = "fully-connected layer on a flat input"


class BatchNorm(IRNode):
    kind: Literal["batchnorm"] = "batchnorm"
    momentum: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    eps: Annotated[float, Field(gt=0.0, lt=1.0)] = 1e-5
    doc: ClassVar[str] = "batch normalisation with learned scale and shift (2 parameters per channel)"


class ReLU(IRNode):
    kind: Literal["relu"] = "relu"


class ReLU6(IRNode):
    kind: Literal["relu6"] = "relu6"
    doc: ClassVar[str] = "min(max(x, 0), 6) (MobileNetV2)"


class Tanh(IRNode):
    kind: Literal["tanh"] = "tanh"


class Sigmoid(IRNode):
    kind: Literal["sigmoid"] = "sigmoid"


class NCReLU(IRNode):
    kind: Literal["ncrelu"] = "ncrelu"
    doc: ClassVar[str] = "cat(relu(x), -relu(-x)) on channels: doubles the width (DiracNets sec. 2.2)"


class Identity(IRNode):
    kind: Literal["identity"] = "identity"


class Flatten(IRNode):
    kind: Literal["flatten"] = "flatten"


class Dropout(IRNode):
    kind: Literal["dropout"] = "dropout"
    p: Probability = 0.5


class MaxPool(IRNode):
    kind: Literal["maxpool"] = "maxpool"
    kernel: PosInt = 2
    stride: PosInt | None = None
    padding: NonNegInt = 0
    ceil: bool = False

    @property
    def step(self) -> int:
        return self.kernel if self.stride is None else self.stride


class AvgPool(IRNode):
    kind: Literal["avgpool"] = "avgpool"
    kernel: PosInt = 2
    stride: PosInt | None = None
    padding: NonNegInt = 0

    @property
    def step(self) -> int:
        return self.kernel if self.stride is None else self.stride


class GlobalAvgPool(IRNode):
    kind: Literal["global_avgpool"] = "global_avgpool"
    doc: ClassVar[str] = "average over all spatial positions, giving a flat vector"


class AdaptiveAvgPool(IRNode):
    kind: Literal["adaptive_avgpool"] = "adaptive_avgpool"
    size: PosInt = 1
    doc: ClassVar[str] = "average pooling to a size x size output whatever the input size (torchvision's heads)"


class Seq(IRNode):
    kind: Literal["seq"] = "seq"
    items: list[CoreNode]
    variadic: ClassVar[str | None] = "items"


class Repeat(IRNode):
    kind: Literal["repeat"] = "repeat"
    n: RepeatCount
    block: CoreNode
    doc: ClassVar[str] = "n copies of a block, each with its own weights"


class _Branches(IRNode):
    """Parallel branches on one input; the subclass says how their outputs are joined."""

    kind: str  # a Literal in each subclass; declared here so that it leads the fields, as everywhere
    branches: list[CoreNode]
    variadic: ClassVar[str | None] = "branches"

    @field_validator("branches")
    @classmethod
    def _some(cls, branches: list[IRNode]) -> list[IRNode]:
        if not branches:
            name = cls.model_fields["kind"].default
            raise FieldProblem("branches", f"{name} needs at least one branch", hint=f"e.g. {name}(identity, conv(32))")
        return branches


class Concat(_Branches):
    kind: Literal["concat"] = "concat"
    doc: ClassVar[str] = "every branch sees the input; outputs joined on channels (DenseNet, Inception, SqueezeNet)"


class Add(_Branches):
    kind: Literal["add"] = "add"
    doc: ClassVar[str] = "every branch sees the input; outputs of equal shape summed"


ShortcutKind = Literal["auto", "identity", "projection", "zeropad"]


class Residual(IRNode):
    kind: Literal["residual"] = "residual"
    body: CoreNode
    shortcut: ShortcutKind | CoreNode = "auto"
    pre: CoreNode | None = None
    post: CoreNode | None = None
    doc: ClassVar[str] = ("post(body(pre(x)) + shortcut): shortcut 'auto' is the identity when shapes agree, "
                          "else a 1x1 projection of pre(x) (WRN); 'zeropad' is He et al.'s option A")


class Dirac(IRNode):
    kind: Literal["dirac"] = "dirac"
    conv: Conv
    a_init: float = 5.0
    b_init: float = 1e-3
    doc: ClassVar[str] = "Dirac parameterisation W = a*delta + b*W_norm of a conv (DiracNets eq. 4-8)"

    @field_validator("conv")
    @classmethod
    def _no_bias(cls, conv: Conv) -> Conv:
        if conv.bias:
            raise FieldProblem("conv", "a Dirac conv has no bias (BN follows it)", hint="drop bias=true")
        if conv.groups != 1 or conv.dilation != 1:
            raise FieldProblem("conv", "a Dirac conv is dense: groups=1 and dilation=1",
                               hint="drop groups= and dilation=")
        return conv


class Highway(IRNode):
    kind: Literal["highway"] = "highway"
    h: Conv | Linear
    bias_init: Annotated[float, Field(ge=-100.0, le=100.0)] = -2.0
    act: Literal["relu", "tanh"] = "relu"
    doc: ClassVar[str] = "y = H(x)*T(x) + x*(1-T(x)), T = sigmoid of a layer shaped like H (Highway eq. 3)"


BlockTemplate = Literal["plain", "residual", "highway", "basic", "bottleneck"]


class Gated(IRNode):
    kind: Literal["gated"] = "gated"
    block: AnyNode | BlockTemplate  # noqa: F821 - completed by archlang.ir.nodes, which knows the families
    k_init: Annotated[float, Field(ge=-100.0, le=100.0)] = 1.0
    doc: ClassVar[str] = ("residual gate u = g(k)*f(x) + x, g = ReLU (Gated ResNets eq. 1); "
                          "on a plain layer u = g(k)*f(x) + (1-g(k))*x")


# The one list of core kinds: the IR unions (nodes.py) and the rule table (archlang.kinds) follow it.
CORE_MODELS: tuple[type[IRNode], ...] = (
    Input, Conv, Linear, BatchNorm, ReLU, ReLU6, Tanh, Sigmoid, NCReLU, Identity, Flatten, Dropout, MaxPool,
    AvgPool, AdaptiveAvgPool, GlobalAvgPool, Seq, Repeat, Concat, Add, Residual, Dirac, Highway, Gated,
)
CoreNode = Annotated[Union[CORE_MODELS], Field(discriminator="kind")]  # noqa: UP007 - a union of a tuple
