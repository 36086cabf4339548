"""The pipeline in one place: text -> AST -> (sweep, lets) -> IR -> expanded core network -> summary.

Nothing here imports torch; `Compiled.build()` does, on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from archlang import ast, infer
from archlang.errors import ArchlangError, Source, Span
from archlang.ir import core
from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.families import Family
from archlang.ir.lower import lower, lower_call
from archlang.parser import parse
from archlang.sweep import Resolved, canonical, resolve, sweep_size

if TYPE_CHECKING:
    from torch import nn

# Building allocates every parameter: refuse sizes no machine holds before torch sees them.
MAX_BUILD_PARAMS = 2_000_000_000
# Layers the shape walk visits (repeat(n, b) counts n times b). The papers' deepest spec, ResNet-1202,
# has under 5,000; the walk costs microseconds a layer, so this bound keeps any spec under a second.
MAX_LAYERS = 50_000


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

    def build(self) -> nn.Module:
        self.check_buildable()
        from archlang.build import build

        return build(self.network)

    def check_buildable(self) -> None:
        """Refuse, from the IR count alone, a network too large to allocate."""
        if self.summary.params > MAX_BUILD_PARAMS:
            raise ArchlangError(f"the network has {self.summary.params:,} parameters, more than the "
                                f"{MAX_BUILD_PARAMS:,} archlang will allocate", source=self.source,
                                span=self.spec.span, hint="`archlang params` counts it without building it")


def _expansion_error(spec: IRNode, err: ValidationError) -> ArchlangError:
    """A family whose arguments are each in range can still expand into a layer that is not (k x width)."""
    family = spec.block if isinstance(spec, core.Gated) else spec
    first = err.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    bound = next(iter((first.get("ctx") or {}).values()), None)
    value = first.get("input")
    shown = f"{value:,}" if isinstance(value, int) else repr(value)
    limit = f" (at most {bound:,})" if isinstance(bound, int) else ""
    return ArchlangError(f"{family.kind}(...) expands into a {err.title.lower()} layer with {field}={shown}, "  # type: ignore[attr-defined]
                         f"out of range{limit}", span=spec.span, hint="use a smaller width or widening factor")


def _expand(spec: IRNode) -> core.Seq:
    try:
        if isinstance(spec, Family):
            return spec.expand()
        if isinstance(spec, core.Gated) and isinstance(spec.block, Family):
            return spec.block.expand(gate_k=spec.k_init)
    except FieldProblem as problem:
        # A family's input=[...] is checked as the shape of its expanded input(...) node.
        family = spec.block if isinstance(spec, core.Gated) else spec
        field = {"shape": "input"}.get(problem.field or "", problem.field or "")
        span = family._arg_spans.get(field, spec.span)
        raise ArchlangError(problem.message, span=span, hint=problem.hint) from None
    except ValidationError as err:
        raise _expansion_error(spec, err) from None
    if isinstance(spec, core.Seq):
        return spec
    raise ArchlangError(f"a network is a family call or a seq(input(...), ...); got {spec.kind}(...)",  # type: ignore[attr-defined]
                        span=spec.span, hint="wrap the layers in seq(input(C, H, W), ...)")


def _layer_count(node: IRNode) -> int:
    """How many layers the shape walk would visit, from the IR alone; refuses a node that is too large.

    The error points at the innermost node (usually a repeat) whose expansion alone passes the limit.
    """
    children = 0
    for value in node.__dict__.values():
        for child in value if isinstance(value, list) else (value,):
            if isinstance(child, IRNode):
                children += _layer_count(child)
    count = 1 + (node.n * children if isinstance(node, core.Repeat) else children)
    if count > MAX_LAYERS:
        what = f"repeat({node.n}, ...)" if isinstance(node, core.Repeat) else "this network"
        raise ArchlangError(f"{what} expands into {count:,} layers, more than the {MAX_LAYERS:,} archlang compiles",
                            span=node.span, hint="use a smaller repeat count or depth")
    return count


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
    _layer_count(network)
    summary = infer.summarize(network)
    train_args, train_spans = _train_clause(resolved.train)
    return Compiled(source, canonical(resolved.network), spec, network, summary, train_args, train_spans)


def _compile_program(source: Source, program: ast.Program) -> list[Compiled]:
    try:
        _check_lets(program)
        return [_compile_resolved(source, r) for r in resolve(program, source)]
    except ArchlangError as err:
        raise err.with_location(source, err.span) from None


def compile_all(text: str | Source, filename: str = "<inline>") -> list[Compiled]:
    """Every network of a spec (one, or one per combination of a sweep)."""
    source = text if isinstance(text, Source) else Source(text, filename)
    return _compile_program(source, parse(source))


def compile_spec(text: str | Source, filename: str = "<inline>") -> Compiled:
    """The one network of a spec; a sweep is refused (compile and train need one network)."""
    source = text if isinstance(text, Source) else Source(text, filename)
    program = parse(source)
    resolve(program, source, expand=False)
    size, first_set = sweep_size(program, source)
    if size > 1:
        raise ArchlangError(f"this spec is a sweep of {size:,} networks; compile and train take one",
                            source=source, span=first_set,
                            hint="use `archlang params` for sweeps, or pick one value from the set")
    return _compile_program(source, program)[0]
