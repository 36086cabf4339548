"""The pipeline in one place: text -> AST -> (sweep, lets) -> IR -> expanded core network -> summary.

Nothing here imports torch; `Compiled.build()` does, on demand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from archlang import ast, catalog, infer
from archlang.errors import ArchlangError, Source, Span
from archlang.ir import core
from archlang.ir.base import FieldProblem, IRNode
from archlang.ir.families import Family
from archlang.ir.lower import lower, lower_call
from archlang.parser import parse
from archlang.sweep import Resolved, canonical, iter_resolved, resolve, sweep_size

if TYPE_CHECKING:
    from torch import nn

# Building allocates every parameter: refuse sizes no machine holds before torch sees them.
MAX_BUILD_PARAMS = 2_000_000_000
# Layers the shape walk visits (repeat(n, b) counts n times b). The papers' deepest spec, ResNet-1202,
# has under 5,000; the walk costs microseconds a layer, so this bound keeps any spec under a second.
MAX_LAYERS = 50_000
# Layers of all the networks of a sweep together (issue 10: 10,000 networks of 48k layers took 45 minutes
# and ~100 GB). Counting costs ~9 us a layer (measured), so a sweep at this cap takes about 10 s.
MAX_SWEEP_LAYERS = 1_000_000


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
    # A sweep's point: (name of the set, chosen value) per set, e.g. (("depth", "28"), ("k", "10")).
    point: tuple[tuple[str, str], ...] = ()

    @property
    def point_text(self) -> str:
        """'depth=28,k=10': the varying values of a sweep's network ('' for a spec without sets)."""
        return ",".join(f"{name}={value}" for name, value in self.point)

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

    def build(self, batch: int = 1, training: bool = False, device: Any = "cpu") -> nn.Module:
        """The module; refused first if it cannot fit on `device` at `batch` (see check_buildable)."""
        self.check_buildable(batch, training, device)
        from archlang.build import build

        return build(self.network, batch=batch, training=training, device=device, summary=self.summary)

    def check_buildable(self, batch: int = 1, training: bool = False, device: Any = "cpu") -> None:
        """Refuse, from the IR alone, a network too large to allocate, or to run (with `training`, to
        train) at `batch` examples in the memory `device` has (infer.memory_estimate)."""
        if self.summary.params > MAX_BUILD_PARAMS:
            raise ArchlangError(f"the network has {self.summary.params:,} parameters, more than the "
                                f"{MAX_BUILD_PARAMS:,} archlang will allocate", source=self.source,
                                span=self.spec.span, hint="`archlang params` counts it without building it")
        try:
            infer.check_memory(infer.memory_estimate(self.summary, batch), training=training, device=str(device))
        except ArchlangError as err:
            raise err.with_location(self.source, self.spec.span) from None


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
    defs = {s.name for s in program.statements if isinstance(s, ast.Def)}
    for stmt in program.statements:
        if isinstance(stmt, ast.Let) and isinstance(stmt.value, ast.Call) and not _has_set_or_name(stmt.value, defs):
            lower_call(stmt.value)


def _has_set_or_name(expr: ast.Expr, defs: set[str]) -> bool:
    """Whether an expression needs substitution first: a set, a name, or a call of a definition."""
    if isinstance(expr, (ast.SetV, ast.Name)) or isinstance(expr, ast.Call) and expr.func in defs:
        return True
    return any(_has_set_or_name(c, defs) for c in ast.children(expr))


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


def _set_names(program: ast.Program) -> dict[Span, str]:
    """What each set of a sweep is called: the argument (`depth={16, 28}`) or `let` it is the value of."""
    names: dict[Span, str] = {}

    def visit(expr: ast.Expr, name: str) -> None:
        if isinstance(expr, ast.SetV):
            names[expr.span] = name
        elif isinstance(expr, ast.Call):
            for i, arg in enumerate(expr.args):
                visit(arg.value, arg.name or f"{expr.func}[{i}]")
        else:
            for child in ast.children(expr):
                visit(child, name)

    for stmt in program.statements:
        if isinstance(stmt, ast.TupleLet):
            visit(stmt.value, "(" + ", ".join(stmt.names) + ")")
        elif isinstance(stmt, (ast.Let, ast.Def)):
            visit(stmt.value, stmt.name)
            for param in stmt.params if isinstance(stmt, ast.Def) else ():
                if param.default is not None:
                    visit(param.default, param.name)
        else:
            visit(stmt, "network")
    return names


def _compile_resolved(source: Source, resolved: Resolved, set_names: dict[Span, str]) -> tuple[Compiled, int]:
    """The compiled network and how many layers its shape walk visited."""
    spec = lower(resolved.network)
    if not isinstance(spec, IRNode):
        raise ArchlangError("the network expression is a value, not a network", span=resolved.network.span,
                            hint="e.g. wrn(depth=28, k=10)")
    network = _expand(spec)
    layers = _layer_count(network)
    summary = infer.summarize(network)
    train_args, train_spans = _train_clause(resolved.train)
    return Compiled(source, canonical(resolved.network), spec, network, summary, train_args, train_spans,
                    _point(resolved, set_names)), layers


def _point(resolved: Resolved, set_names: dict[Span, str]) -> tuple[tuple[str, str], ...]:
    """(name, value) per set; a paired set `let (d, k) = {(16, 8), ...}` gives d and k one each."""
    point: list[tuple[str, str]] = []
    for span, value in resolved.choices:
        name = set_names.get(span, "?")
        names = name[1:-1].split(", ") if name.startswith("(") else [name]
        if isinstance(value, ast.TupleV) and len(value.items) == len(names) > 1:
            point += [(n, canonical(v)) for n, v in zip(names, value.items)]
        else:
            point.append((name, canonical(value)))
    return tuple(point)


def _check_sweep_work(done: int, last: int, left: int, networks: int, first_set: Span | None) -> None:
    """Refuse a sweep whose layers in all, estimated from the networks counted so far, pass the cap."""
    estimate = done + last * left
    if networks > 1 and estimate > MAX_SWEEP_LAYERS:
        about = "" if left == 0 else "about "
        raise ArchlangError(f"the sweep's {networks:,} networks have {about}{estimate:,} layers in all, more than "
                            f"the {MAX_SWEEP_LAYERS:,} archlang counts in one sweep", span=first_set,
                            hint="split it into several specs, or sweep fewer or smaller networks")


def iter_compiled(spec: str | os.PathLike[str] | Source, filename: str = "<inline>") -> Iterator[Compiled]:
    """Every network of a spec, one at a time: a sweep's summaries need not all be held at once.

    The sweep's total work is estimated from its first network, before the others are expanded.
    """
    from archlang.schema import looks_like_ir_json

    source = as_source(spec, filename)
    if looks_like_ir_json(source.text):
        return iter([_compile_ir(source)])
    return _iter_program(source, parse(source))


def _iter_program(source: Source, program: ast.Program) -> Iterator[Compiled]:
    try:
        _check_lets(program)
        names = _set_names(program)
        networks, first_set = sweep_size(program, source)
        done = 0
        for i, resolved in enumerate(iter_resolved(program, source)):
            compiled, layers = _compile_resolved(source, resolved, names)
            done += layers
            _check_sweep_work(done, layers, networks - i - 1, networks, first_set)
            yield compiled
    except ArchlangError as err:
        raise err.with_location(source, err.span) from None


def _compile_ir(source: Source) -> Compiled:
    """A network given as IR JSON (`compile --json` output), validated by the same models as a spec."""
    from archlang.ir.text import to_text
    from archlang.schema import read_ir_json

    spec = read_ir_json(source)
    try:
        network = _expand(spec)
        _layer_count(network)
        summary = infer.summarize(network)
    except ArchlangError as err:  # IR nodes carry no source spans: name the file, not a line of JSON
        raise ArchlangError(err.message, path=source.filename, hint=err.hint) from None
    return Compiled(source, to_text(spec), spec, network, summary)


def as_source(spec: str | os.PathLike[str] | Source, filename: str = "<inline>") -> Source:
    """A spec given to the Python API: a Source, a path, a shipped name, or the spec text itself.

    A string is a file only when it ends in .arch or .json (and holds no call), and a shipped spec only
    when it is exactly a catalogue name: any other string is spec text, and nothing in it is opened.
    """
    if isinstance(spec, Source):
        return spec
    from archlang.parser import read_source

    if isinstance(spec, os.PathLike):
        return read_source(os.fspath(spec))
    one_word = filename == "<inline>" and "(" not in spec and "\n" not in spec
    if one_word and (spec.endswith((".arch", ".json")) or catalog.find(spec) is not None):
        return read_source(spec)
    return Source(spec, filename)


def compile_all(spec: str | os.PathLike[str] | Source, filename: str = "<inline>") -> list[Compiled]:
    """Every network of a spec (one, or one per combination of a sweep); IR JSON is one network."""
    return list(iter_compiled(spec, filename))


def compile_spec(spec: str | os.PathLike[str] | Source, filename: str = "<inline>") -> Compiled:
    """The one network of a spec (text, a .arch path, a shipped name or IR JSON); a sweep is refused."""
    from archlang.schema import looks_like_ir_json

    source = as_source(spec, filename)
    if looks_like_ir_json(source.text):
        return _compile_ir(source)
    program = parse(source)
    resolve(program, source, expand=False)
    size, first_set = sweep_size(program, source)
    if size > 1:
        raise ArchlangError(f"this spec is a sweep of {size:,} networks; compile and train take one",
                            source=source, span=first_set,
                            hint="use `archlang params` for sweeps, or pick one value from the set")
    return next(_iter_program(source, program))
