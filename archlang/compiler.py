"""The pipeline in one place: text -> AST -> (sweep, lets) -> IR -> expanded core network -> summary.

Nothing here imports torch; `Compiled.build()` does, on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archlang import ast, infer
from archlang.errors import ArchlangError, Source, Span
from archlang.ir import core
from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.families import Family
from archlang.ir.lower import lower, lower_call
from archlang.parser import parse
from archlang.sweep import Resolved, canonical, resolve

if TYPE_CHECKING:
    from torch import nn

# Building allocates every parameter: refuse sizes no machine holds before torch sees them.
MAX_BUILD_PARAMS = 2_000_000_000


@dataclass
class Compiled:
    """A validated network: its IR before and after expansion, its summary, and how to build it."""

    source: Source
    canonical: str
    spec: IRNode
    network: core.Seq
    summary: infer.Summary
    train_args: dict[str, Any] = field(default_factory=dict)
    train_spans: dict[str, Span] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        spec = self.spec.block if isinstance(self.spec, core.Gated) else self.spec
        return spec.kind if isinstance(spec, Family) else None  # type: ignore[attr-defined]

    @property
    def family_args(self) -> dict[str, Any]:
        spec = self.spec.block if isinstance(self.spec, core.Gated) else self.spec
        if not isinstance(spec, Family):
            return {}
        args = spec.model_dump(mode="json", exclude={"kind"})
        if isinstance(self.spec, core.Gated):
            args["gated"] = True
        return args

    @property
    def gated(self) -> bool:
        return any(layer.kind == "gate" for layer in self.summary.layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.summary.input_shape

    @property
    def num_classes(self) -> int:
        return self.summary.output_shape[0]

    @property
    def total_params(self) -> int:
        return self.summary.params

    def build(self) -> "nn.Module":
        if self.summary.params > MAX_BUILD_PARAMS:
            raise ArchlangError(f"the network has {self.summary.params:,} parameters, more than the "
                                f"{MAX_BUILD_PARAMS:,} archlang will allocate", source=self.source,
                                span=self.spec.span, hint="`archlang params` counts it without building it")
        from archlang.build import build

        return build(self.network)


def _expand(spec: IRNode) -> core.Seq:
    try:
        if isinstance(spec, Family):
            return spec.expand()
        if isinstance(spec, core.Gated) and isinstance(spec.block, Family):
            return spec.block.expand(gate_k=spec.k_init)
    except FieldProblem as problem:
        raise ArchlangError(problem.message, span=spec.span, hint=problem.hint) from None
    if isinstance(spec, core.Seq):
        return spec
    raise ArchlangError(f"a network is a family call or a seq(input(...), ...); got {spec.kind}(...)",  # type: ignore[attr-defined]
                        span=spec.span, hint="wrap the layers in seq(input(C, H, W), ...)")


def _check_lets(program: ast.Program) -> None:
    """Validate every `let` that defines a call, so an unused definition with a typo is still reported."""
    for stmt in program.statements:
        if isinstance(stmt, ast.Let) and isinstance(stmt.value, ast.Call) and not _has_set_or_name(stmt.value):
            lower_call(stmt.value)


def _has_set_or_name(expr: ast.Expr) -> bool:
    if isinstance(expr, (ast.SetV, ast.Name)):
        return True
    return any(_has_set_or_name(c) for c in ast.children(expr))


def _train_clause(call: ast.Call | None) -> tuple[dict[str, Any], dict[str, Span]]:
    if call is None:
        return {}, {}
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    for arg in call.args:
        if arg.name is None:
            raise ArchlangError("train(...) takes only named fields, e.g. train(epochs=10)", span=arg.span)
        if arg.name in values:
            raise ArchlangError(f"train field '{arg.name}' is given twice", span=arg.name_span or arg.span)
        values[arg.name] = lower(arg.value, frozenset({_name_of(arg.value)}))
        spans[arg.name] = arg.span
    return values, spans


def _name_of(expr: ast.Expr) -> str:
    return expr.id if isinstance(expr, ast.Name) else ""


def _compile_resolved(source: Source, resolved: Resolved) -> Compiled:
    spec = lower(resolved.network)
    if not isinstance(spec, IRNode):
        raise ArchlangError("the network expression is a value, not a network", span=resolved.network.span,
                            hint="e.g. wrn(depth=28, k=10)")
    network = _expand(spec)
    summary = infer.summarize(network)
    train_args, train_spans = _train_clause(resolved.train)
    return Compiled(source, canonical(resolved.network), spec, network, summary, train_args, train_spans)


def compile_all(text: str | Source, filename: str = "<inline>") -> list[Compiled]:
    """Every network of a spec (one, or one per combination of a sweep)."""
    source = text if isinstance(text, Source) else Source(text, filename)
    try:
        program = parse(source)
        _check_lets(program)
        return [_compile_resolved(source, r) for r in resolve(program, source)]
    except ArchlangError as err:
        raise err.with_location(source, err.span) from None


def compile_spec(text: str | Source, filename: str = "<inline>") -> Compiled:
    """The one network of a spec; a sweep is refused (compile and train need one network)."""
    source = text if isinstance(text, Source) else Source(text, filename)
    program = parse(source)
    resolved = resolve(program, source)
    if len(resolved) > 1:
        first_set = resolved[0].choices[0][0]
        raise ArchlangError(f"this spec is a sweep of {len(resolved)} networks; compile and train take one",
                            source=source, span=first_set,
                            hint="use `archlang params` for sweeps, or pick one value from the set")
    return compile_all(source)[0]
