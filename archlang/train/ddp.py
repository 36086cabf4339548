"""Several processes, one per GPU (or CPU worker), with torch.distributed: torchrun and DDP.

`torchrun --nproc_per_node N -m archlang train SPEC ...` starts N copies of the command;
torchrun tells each its place through the environment (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR/PORT). Each process builds the same network, DistributedDataParallel broadcasts
rank 0's weights and averages the gradients during backward, and every process trains on its
shard of the same global batch (see data.BatchLoader.shard). Rank 0 alone writes the run
folder, evaluates, and talks to the user.

Batch norm stays per process (statistics over each GPU's part of the batch), as in the
papers' multi-GPU code; DDP copies rank 0's running statistics to the others every step.
Nothing here runs for a single process: every helper is the identity when world_size is 1.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

from archlang.errors import ArchlangError
from archlang.runs import rng as run_rng
from archlang.runs.records import RankRng

T = TypeVar("T")

LAUNCH_HINT = "launch with `torchrun --nproc_per_node N -m archlang train SPEC ...`"


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun launch; world_size 1 is a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


class ReportedByRankZero(ArchlangError):
    """A failure every process shares, raised on ranks > 0: rank 0 raises and prints the real one.

    The CLI exits with status 2 on these without printing, so a NaN loss or a bad spec is
    reported once, not once per GPU.
    """


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ArchlangError(f"the environment variable {name}={text!r} is not an integer",
                            hint=LAUNCH_HINT) from None


def context_from_env(environ: Mapping[str, str] | None = None) -> DistContext:
    """The torchrun launch this process belongs to, or SINGLE when there is none (WORLD_SIZE <= 1)."""
    env = os.environ if environ is None else environ
    world = _env_int(env, "WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    rank, local = _env_int(env, "RANK", -1), _env_int(env, "LOCAL_RANK", -1)
    if not (0 <= rank < world and local >= 0):
        raise ArchlangError(f"WORLD_SIZE={world} but RANK={rank}, LOCAL_RANK={local}: not a torchrun launch",
                            hint=LAUNCH_HINT)
    return DistContext(rank, world, local)


def _is_cuda(device_name: str) -> bool:
    return device_name.startswith("cuda")


def device_for(device_name: str, ctx: DistContext) -> torch.device:
    """The device this process trains on: cuda:LOCAL_RANK for --device cuda under torchrun."""
    if not (device_name == "cpu" or _is_cuda(device_name)):
        raise ArchlangError(f"unknown device '{device_name}'", hint="use cpu or cuda")
    if _is_cuda(device_name) and not torch.cuda.is_available():
        raise ArchlangError(f"--device {device_name}: no CUDA device is available here", hint="use --device cpu")
    if not ctx.enabled or not _is_cuda(device_name):
        return torch.device(device_name)
    if device_name != "cuda":  # one GPU per process, chosen by torchrun, never by the user
        raise ArchlangError(f"--device {device_name}: under torchrun each process uses cuda:LOCAL_RANK",
                            hint="pass --device cuda; choose GPUs with CUDA_VISIBLE_DEVICES")
    count = torch.cuda.device_count()
    if ctx.local_rank >= count:
        raise ArchlangError(f"process {ctx.rank} has LOCAL_RANK {ctx.local_rank} but this machine has {count} GPU(s)",
                            hint=f"use --nproc_per_node {count} or fewer")
    return torch.device("cuda", ctx.local_rank)


@contextmanager
def session(device_name: str) -> Iterator[DistContext]:
    """The process group of a torchrun launch (NCCL on CUDA, gloo on CPU), set up once.

    Nested sessions (the CLI opens one, then train() does) reuse it; only the one that
    created the group destroys it. A single process gets SINGLE and no group.
    """
    ctx = context_from_env()
    if not ctx.enabled:
        yield ctx
        return
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        device = device_for(device_name, ctx)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL and the object collectives use the current device
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    if dist.get_world_size() != ctx.world_size or dist.get_rank() != ctx.rank:
        raise ArchlangError(f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, "
                            f"the environment says {ctx.rank} of {ctx.world_size}")
    try:
        yield ctx
        if created:
            _last_barrier(dist)
    except ArchlangError:
        # A reported error is agreed by all processes (the others return normally): meet them.
        if created:
            _last_barrier(dist)
        raise
    finally:
        if created:
            # Free what may still hold the group (DDP's reducer, if a reference cycle keeps it) while the
            # interpreter is whole, so its gloo threads end here, not in interpreter teardown: rank 0
            # once aborted after a finished run ("terminate called without an active exception",
            # session 15 CI; 0 of 28 launches reproduced it), which this ordering is meant to rule out.
            gc.collect()
            dist.destroy_process_group()


def _last_barrier(dist: Any) -> None:
    """Wait for every process before tearing down: a peer destroyed while another still talks
    makes gloo abort (SIGABRT) in that one. Bounded, so a process that died cannot hang the rest."""
    try:
        dist.monitored_barrier(timeout=timedelta(seconds=120)) if dist.get_backend() == "gloo" else dist.barrier()
    except RuntimeError:
        pass


def agreed(ctx: DistContext, action: Callable[[], T]) -> T:
    """Run `action` on every process; if it raises an ArchlangError on any of them, raise on all.

    Without this a rank that failed (say, a missing dataset) would leave the others waiting
    in the next collective. Rank 0 raises its own error (or names the rank that failed);
    the others raise ReportedByRankZero so the message is printed once.
    """
    if not ctx.enabled:
        return action()
    import torch.distributed as dist

    result: T | None = None
    error: ArchlangError | None = None
    try:
        result = action()
    except ArchlangError as exc:
        error = exc
    rendered: list[str | None] = [None] * ctx.world_size
    dist.all_gather_object(rendered, None if error is None else error.render())
    failed = [(rank, text) for rank, text in enumerate(rendered) if text is not None]
    if not failed:
        return result  # type: ignore[return-value]
    if not ctx.is_main:
        raise ReportedByRankZero(failed[0][1] or "failed on another process")
    if error is not None:
        raise error
    rank, text = failed[0]
    raise ArchlangError(f"process {rank} of {ctx.world_size} failed:\n{text}")


def same_everywhere(ctx: DistContext, what: str, value: Any) -> None:
    """Check that every process holds the same (JSON-like) value, e.g. the step resumed from."""
    if not ctx.enabled:
        return
    import torch.distributed as dist

    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise ArchlangError(f"the processes disagree on {what}: {values}",
                            hint="every process must see the same run folder (a shared file system)")


def sum_over_ranks(ctx: DistContext, values: list[float], device: torch.device) -> list[float]:
    """Elementwise sums over all processes, in float64 (exact for counts below 2**53)."""
    if not ctx.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(ctx: DistContext, flag: bool, device: torch.device) -> bool:
    """True on every process if it is true on any: decisions from local clocks must agree."""
    return sum_over_ranks(ctx, [1.0 if flag else 0.0], device)[0] > 0


def check_batch_split(ctx: DistContext, batch_size: int, images: int) -> None:
    """The global batch is the recipe's batch_size, split evenly over the processes."""
    if not ctx.enabled:
        return
    if batch_size % ctx.world_size:
        raise ArchlangError(f"batch_size {batch_size} is not divisible by the {ctx.world_size} processes of this launch",
                            hint="the recipe's batch_size is the global batch, split over the processes: "
                                 "use --batch-size or --nproc_per_node so that one divides the other")
    last = images % batch_size
    if 0 < last < ctx.world_size:
        raise ArchlangError(f"the last batch of an epoch has {last} image(s), fewer than the {ctx.world_size} processes",
                            hint="change --subset or --batch-size so that every process gets part of every batch")


def wrap(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the model; construction broadcasts rank 0's weights and buffers.

    Built after the optimizer: the flat NAdam (flat.py) has already moved the parameters'
    storage into one flat tensor per group, and DDP's broadcast writes through those views.
    DDP's gradient allreduce finishes inside backward, before optimizer.step()'s pre-hook
    gathers the (averaged) gradients into the flat tensor, so the order is right.
    gradient_as_bucket_view stays off: the flat gather sets p.grad to None after every step.
    Buffers keep DDP's default: rank 0's (BN running statistics) are copied to the others
    before every training forward, so the evaluated and checkpointed ones are rank 0's.
    """
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)


def seed_rank(ctx: DistContext, seed: int, *salt: int) -> None:
    """A different random stream per process (dropout masks must not repeat across GPUs).

    Rank 0 keeps the single-process stream; the data order never comes from it (data.py
    draws it from its own generator), so the batches do not depend on this.
    """
    if ctx.enabled and ctx.rank > 0:
        value = seed * 1_000_003
        for s in (ctx.rank, *salt):
            value = (value * 7_919 + s + 1) % 2**63
        torch.manual_seed(value)


def gather_rng(ctx: DistContext, device: torch.device) -> list[RankRng]:
    """Every process's RNG state, rank by rank (for the checkpoint); one entry for a single process.

    A collective under torchrun: every process calls it at the same checkpoint.
    """
    mine = run_rng.capture(device)
    if not ctx.enabled:
        return [mine]
    import torch.distributed as dist

    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, mine.model_dump())
    return [RankRng.model_validate(s) for s in states]
