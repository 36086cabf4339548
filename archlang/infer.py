"""Shape, parameter, multiply-accumulate and memory inference on the IR, by formula, without torch.

This is what `archlang params` runs (so it must stay torch-free) and what `compile` prints;
tests check every count here against `sum(p.numel())` of the built module. The rules of each
kind live in its entry of archlang.kinds; this file walks the network through them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from archlang import kinds
from archlang.errors import ArchlangError
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.kinds.base import Cost, Leaf, conv_shape, pool_shape, shape_text
from archlang.kinds.blocks import ShortcutPlan, shortcut_plan

Shape = tuple[int, ...]

# Networks beyond these sizes are refused before anything is allocated or even fully walked.
MAX_NODES = 2_000_000

__all__ = ["MAX_NODES", "Layer", "MemoryEstimate", "ShortcutPlan", "Summary", "available_memory", "check_memory",
           "conv_shape", "memory_estimate", "pool_shape", "round_like_papers", "shape_text", "shortcut_plan",
           "size_text", "summarize"]


@dataclass
class Layer:
    """One row of the summary: a node, where it sits, what it outputs and what it costs.

    `path` is the module name of the row in the built network (`model.get_submodule(path)`, or the
    parameter name for a gate's k); `activations` counts the values per example the row computes
    (0 for views and containers that only pass their children's results on); `inputs` the values per
    example it reads.
    """

    path: str
    depth: int
    kind: str
    label: str
    out_shape: Shape
    params: int = 0
    weights: int = 0
    macs: int = 0
    leaf: bool = True
    activations: int = 0
    inputs: int = 0


@dataclass
class Summary:
    input_shape: Shape
    output_shape: Shape
    layers: list[Layer] = field(default_factory=list)
    params: int = 0
    weights: int = 0
    macs: int = 0


class _Rows:
    """The visitor a container's walk gets during inference: each child becomes rows under `path`."""

    def __init__(self, walker: _Walker, path: str, depth: int, in_shape: Shape) -> None:
        self.walker, self.path, self.depth, self.in_shape = walker, path, depth, in_shape

    def child(self, node: IRNode, shape: Shape, name: str) -> Shape:
        return self.walker.walk(node, shape, f"{self.path}.{name}", self.depth + 1)

    def own(self, name: str, kind: str, label: str, shape: Shape, cost: Cost, allocates: bool = False) -> None:
        self.walker.layers.append(Layer(f"{self.path}.{name}", self.depth + 1, kind, label, shape, cost.params,
                                        cost.weights, cost.macs, True, math.prod(shape) if allocates else 0,
                                        math.prod(self.in_shape)))


class _Walker:
    """Walks the IR once, recording a Layer per node and checking shapes as it goes."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.visited = 0

    def walk(self, node: IRNode, shape: Shape, path: str, depth: int) -> Shape:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise ArchlangError(f"the network has more than {MAX_NODES} layers", span=node.span)
        entry = kinds.entry(node)
        kind: str = node.kind  # type: ignore[attr-defined]
        if isinstance(entry, Leaf):
            out = entry.shape(node, shape)
            cost = entry.cost(node, shape, out)
            self.layers.append(Layer(path, depth, kind, entry.label(node, shape, out), out, cost.params, cost.weights,
                                     cost.macs, True, entry.outputs * math.prod(out), math.prod(shape)))
            return out
        row = Layer(path, depth, kind, entry.label(node), shape, leaf=False, inputs=math.prod(shape))
        self.layers.append(row)
        start = len(self.layers)
        out, _plan = entry.walk(node, shape, _Rows(self, path, depth, shape))
        inner = [layer for layer in self.layers[start:] if layer.leaf]
        row.out_shape = out
        row.params = sum(layer.params for layer in inner)
        row.weights = sum(layer.weights for layer in inner)
        row.macs = sum(layer.macs for layer in inner)
        row.activations = entry.outputs * math.prod(out)
        return out


def summarize(network: core.Seq) -> Summary:
    """Check every shape of an expanded network and count its parameters and MACs."""
    if not network.items or not isinstance(network.items[0], core.Input):
        raise ArchlangError("the network's input shape is unknown", span=network.span,
                            hint="start the network with input(C, H, W), e.g. seq(input(3, 32, 32), conv(16), ...)")
    walker = _Walker()
    shape: Shape = tuple(network.items[0].shape)  # type: ignore[union-attr]
    input_shape = shape
    for i, item in enumerate(network.items[1:], start=1):
        shape = walker.walk(item, shape, kinds.module_name(i), 0)
    leaves = [layer for layer in walker.layers if layer.leaf]
    return Summary(input_shape, shape, walker.layers, sum(x.params for x in leaves), sum(x.weights for x in leaves),
                   sum(x.macs for x in leaves))


# ---- memory (issue 10: refuse what cannot fit before allocating it) ------------------------------

BYTES_PER_VALUE = 4  # float32, what archlang builds and trains in


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a network needs at a batch size, in torchinfo's terms, plus training state (float32).

    - input: batch x input values;
    - forward/backward pass: batch x (every value a layer computes and autograd keeps for backward,
      plus the gradients of the largest layer's output and input, which backward holds at once).
      Views (flatten, identity) add nothing; a sum or concatenation of branches adds its output.
      torchinfo counts every output twice instead; this model is closer to what is measured (peak RSS
      of a training step on CPU, tests/test_memory.py);
    - params, gradients (one per parameter) and optimizer state (`optimizer_buffers` per parameter:
      1 for SGD with momentum, 2 for Adam);
    - inference peak: the largest input + output of one layer at this batch, a lower bound of what a
      forward pass without gradients holds at once.
    BatchNorm statistics, Dirac deltas and the allocator's slack are not counted.
    """

    batch: int
    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    inference_peak_bytes: int

    @property
    def estimated_total(self) -> int:
        """torchinfo's "estimated total size": input + forward/backward pass + params."""
        return self.input_bytes + self.forward_backward_bytes + self.params_bytes

    @property
    def training_bytes(self) -> int:
        return self.estimated_total + self.gradient_bytes + self.optimizer_bytes

    @property
    def inference_bytes(self) -> int:
        return self.params_bytes + self.inference_peak_bytes


def memory_estimate(network: core.Seq | Summary, batch: int = 1, optimizer_buffers: int = 1) -> MemoryEstimate:
    """The memory of a network (its IR or its summary) at `batch` examples, without building it."""
    summary = network if isinstance(network, Summary) else summarize(network)
    values = BYTES_PER_VALUE * batch
    leaves = [layer for layer in summary.layers if layer.leaf and layer.kind != "gate"]
    peak = max((layer.inputs + math.prod(layer.out_shape) for layer in leaves), default=0)
    params = BYTES_PER_VALUE * summary.params
    kept = sum(layer.activations for layer in summary.layers)
    largest = max((layer.activations for layer in summary.layers), default=0)
    return MemoryEstimate(batch, values * math.prod(summary.input_shape), values * (kept + 2 * largest),
                          params, params, optimizer_buffers * params, values * peak)


def size_text(size: int) -> str:
    """Bytes as torchinfo prints them, in decimal units: 401.41 GB, 2.20 MB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What a cgroup (v2) memory limit leaves, when the process runs under one."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            current = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - current)


def available_memory(device: str = "cpu") -> int | None:
    """Free bytes on the device (the machine's available memory, or the GPU's free memory); None if unknown."""
    if device.startswith("cuda"):
        import torch  # only asked for a GPU, which torch alone can see

        try:
            free, _total = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError):  # no such GPU: whoever chose the device reports that
            return None
        return int(free)
    known = [n for n in (_meminfo_available(), _cgroup_available()) if n is not None]
    return min(known) if known else None


def check_memory(estimate: MemoryEstimate, training: bool = False, device: str = "cpu",
                 available: int | None = None) -> None:
    """Refuse, with the figures, a network that cannot fit on the device at the estimate's batch."""
    free = available if available is not None else available_memory(device)
    needed = estimate.training_bytes if training else estimate.inference_bytes
    if free is None or needed <= free:
        return
    if training:
        parts = (f"forward/backward pass {size_text(estimate.forward_backward_bytes)}, input "
                 f"{size_text(estimate.input_bytes)}, parameters, gradients and optimizer state "
                 f"{size_text(estimate.params_bytes + estimate.gradient_bytes + estimate.optimizer_bytes)}")
    else:
        parts = (f"its largest layer's input and output {size_text(estimate.inference_peak_bytes)}, parameters "
                 f"{size_text(estimate.params_bytes)}")
    where = "the GPU's free memory" if device.startswith("cuda") else "this machine's available memory"
    verb = "about" if training else "at least"  # the inference figure is a lower bound
    raise ArchlangError(f"the network needs {verb} {size_text(needed)} to {'train' if training else 'run'} at "
                        f"batch {estimate.batch} ({parts}), more than the {size_text(free)} of {where}",
                        hint="use a smaller batch size or input, or a smaller network; "
                        "`archlang compile --batch N` shows the estimate")


def round_like_papers(count: int) -> str:
    """36,479,194 -> '36.5M', 38,986 -> '39K': how the papers print parameter counts."""
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M"
    if count >= 1_000:
        return f"{count / 1e3:.0f}K"
    return str(count)
