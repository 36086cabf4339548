"""Regional compilation (`--compile`): torch.compile chunks of consecutive identical blocks, one
compilation per kind of chunk, so a 100-layer network compiles in seconds, not minutes.

Measured (1 thread, CPU time per training step, one process, trainings sharing the machine;
`mlp(depth=100, width=50, block=gated(residual))`, NAdam, batch 128): the single net eager
44.9 ms, chunks of 10 blocks 32.1 ms after 3.5 s to compile (inductor's cache warm; the G = 8
grouped net's first step took 13.7 s with it cold), the whole model 30.0 ms after 104 s. The
benchmark's per-step figures, grouped and highway nets included: docs/training.md (--compile).
Compiled kernels round differently: a compiled run equals its eager run to rounding (tests), not
bit for bit, and dropout draws its masks from inductor's generator.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

Runner = Callable[[torch.Tensor], torch.Tensor]
CHUNK = 10  # blocks per compiled region: per-region overhead (~0.4 ms a block fwd + bwd) against compile time


def run_blocks(blocks: tuple[nn.Module, ...], x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return x


def _structure(module: nn.Module) -> tuple[type, str]:
    """Blocks that print alike take the same code path: one compiled function serves them all
    (other shapes only make dynamo specialise that function once more)."""
    return type(module), repr(module)


def _is_block(module: nn.Module) -> bool:
    """A module with children (residual, highway, gated layer): a lone linear or batch norm is
    one kernel that inductor cannot improve, so it runs eagerly."""
    return next(module.children(), None) is not None


def chunks_of(items: Sequence[nn.Module], size: int) -> list[tuple[nn.Module, ...]]:
    """The items in order; runs of consecutive identical blocks cut into chunks of at most `size`,
    every other item a chunk of its own."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    out: list[tuple[nn.Module, ...]] = []
    run: list[nn.Module] = []
    for item in items:
        if run and _is_block(item) and _structure(item) == _structure(run[0]) and len(run) < size:
            run.append(item)
            continue
        if run:
            out.append(tuple(run))
        run = [item]
    if run:
        out.append(tuple(run))
    return out


def own_code(function: Callable[..., Any], n: int) -> Callable[..., Any]:
    """The function under a code object of its own: dynamo keeps compiled variants per code object
    (at most torch._dynamo.config.recompile_limit), so each kind of chunk gets its own allowance."""
    code = function.__code__.replace(co_name=f"{function.__name__}_{n}")
    return types.FunctionType(code, function.__globals__, code.co_name)


def compiled_runner(items: Sequence[nn.Module], size: int = CHUNK, **options: Any) -> Runner:
    """A forward over `items` (a Sequential's modules) in which every chunk of blocks runs compiled.

    One torch.compile'd function per kind of chunk (structure, length): dynamo guards on the
    modules' attributes, not their identity, so the five chunks of a 100-layer MLP trace once.
    """
    functions: dict[tuple[Any, ...], Callable[..., torch.Tensor]] = {}
    plan: list[tuple[Callable[..., torch.Tensor], tuple[nn.Module, ...]]] = []
    for chunk in chunks_of(items, size):
        if not _is_block(chunk[0]):
            plan.append((run_blocks, chunk))
            continue
        key = (_structure(chunk[0]), len(chunk))
        if key not in functions:
            functions[key] = torch.compile(own_code(run_blocks, len(functions)), **options)
        plan.append((functions[key], chunk))

    def forward(x: torch.Tensor) -> torch.Tensor:
        for function, chunk in plan:
            x = function(chunk, x)
        return x
    return forward


class Regional(nn.Module):
    """A Sequential run through compiled_runner; its parameters stay the inner module's (under
    `inner.`), so checkpoints are written from the inner module as without --compile."""

    def __init__(self, inner: nn.Sequential, size: int = CHUNK, **options: Any) -> None:
        super().__init__()
        self.inner = inner
        self._forward = compiled_runner(list(inner), size, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)
