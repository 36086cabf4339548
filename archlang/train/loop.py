"""The training loop: one run folder, resumable at any checkpoint, bit-exact on CPU.

One process, or several under torchrun (DistributedDataParallel; see archlang.train.ddp).
"""

from __future__ import annotations

import ctypes
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlang.errors import ArchlangError
from archlang.train import checkpoint as ckpt
from archlang.train import ddp, model_tools, plots, runfolder, sources
from archlang.train.data import Dataset
from archlang.train.recipes import ResolvedRecipe, build_recipe


@dataclass
class TrainOptions:
    """How to run, as opposed to what to train (the recipe): none of these enter the run hash."""

    device: str = "cpu"
    bf16: bool = False  # bf16 autocast (about 2x on CPU for WRN-16-4); default is the papers' fp32
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    progress: bool = True
    download: bool | None = None  # None: download only when no data_dir is given
    cache_dir: Path | None = None
    checkpoint_every_s: float = 300.0  # mid-epoch checkpoints for long epochs
    max_steps: int | None = None  # stop (checkpointed) after this many optimizer steps of this call
    time_limit_s: float | None = None  # stop (checkpointed) after this long; resume later
    workers: int | None = None  # DataLoader processes for ImageNet (None: up to 8, one core left free)
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr, flush=True))


# glibc's defaults return freed conv buffers to the OS and map big ones afresh every step:
# slow and noisy on CPU (WRN-16-4 step 2.4-6.0 s -> steady 1.9 s with these settings).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_allocator() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    except (OSError, AttributeError):
        return False


def _check_fit(compiled: Any, data: Dataset) -> None:
    shape = tuple(data.train.sample_shape())
    if tuple(compiled.input_shape) != shape:
        raise ArchlangError(f"the spec takes inputs of shape {tuple(compiled.input_shape)} but {data.name} images are {shape}",
                            hint="pick a recipe for this dataset with --recipe, or a spec for it")
    if compiled.num_classes != data.num_classes:
        raise ArchlangError(f"the spec has {compiled.num_classes} classes but {data.name} has {data.num_classes}",
                            hint="set the number of classes (dataset) in the spec to match")


@dataclass
class EpochTotals:
    """Running sums of the current epoch; saved in mid-epoch checkpoints for exact resume."""

    loss_sum: float = 0.0
    wrong: int = 0
    seen: int = 0
    seconds: float = 0.0

    def record(self) -> tuple[float, float]:
        return self.loss_sum / max(1, self.seen), 100.0 * self.wrong / max(1, self.seen)


@dataclass(frozen=True)
class EvalResult:
    loss: float
    error: float  # top-1, percent
    error_top5: float | None  # percent; None with 5 classes or fewer


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, autocast: Any) -> EvalResult:
    model.eval()
    loss_sum, wrong, wrong5, seen, classes = 0.0, 0, 0, 0, 0
    for x, y in loader.batches(0):
        with autocast():
            out = model(x)
        loss_sum += float(F.cross_entropy(out.float(), y, reduction="sum"))
        wrong += int((out.argmax(1) != y).sum())
        classes = out.shape[1]
        if classes > 5:
            wrong5 += int((out.topk(5, dim=1).indices != y[:, None]).all(dim=1).sum())
        seen += int(y.numel())
    n = max(1, seen)
    top5 = 100.0 * wrong5 / n if classes > 5 else None
    return EvalResult(loss_sum / n, 100.0 * wrong / n, top5)


class _Progress:
    """A rich progress bar with loss, error and time left; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                transient=True)
            self.bar.start()
        self.task = None

    def epoch(self, description: str, total: int, done: int) -> None:
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(description, total=total, completed=done, stats="")

    def step(self, stats: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, stats=stats)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run_name(compiled: Any, resolved: ResolvedRecipe, ident: runfolder.RunIdentity) -> str:
    return f"{compiled.family or 'net'}-{resolved.name}-{ident.run_hash[:8]}"


def _model_state_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})


def _nonfinite(folder: Path, value: float, epoch: int, step: int, good: Path | None) -> ArchlangError:
    kept = f"the last good checkpoint is {good}" if good else "no checkpoint was written yet"
    return ArchlangError(f"loss became {value} at epoch {epoch}, step {step}; training stopped ({kept})",
                         path=str(folder), hint="lower the learning rate (e.g. --lr) or check the data normalisation")


def _quiet(message: str) -> None:
    """The log of ranks > 0 under torchrun: rank 0 speaks for the whole launch."""


def _shared(ctx: ddp.DistContext, error: ArchlangError) -> ArchlangError:
    """An error every process raises at the same point: rank 0's is printed, the others' are not."""
    if ctx.is_main:
        return error
    return ddp.ReportedByRankZero(error.message, path=error.path, hint=error.hint)


def _ddp_loss(loss: torch.Tensor, local_n: int, global_n: int, ctx: ddp.DistContext) -> torch.Tensor:
    """The loss to backpropagate so that DDP's gradient average is the gradient of the global batch mean.

    DDP averages the processes' gradients; with equal shards that is exactly the batch mean.
    A short last batch splits unevenly (sizes differ by one), so each mean is weighted by its share.
    """
    if not ctx.enabled or local_n * ctx.world_size == global_n:
        return loss
    return loss * (local_n * ctx.world_size / global_n)


@dataclass
class _RunPlan:
    """What was decided before any data is read: what to train, where, on which device."""

    resolved: ResolvedRecipe
    ident: runfolder.RunIdentity
    folder: Path
    recipe_label: str
    subset: int | None
    data_dir: str | Path | None
    device: torch.device
    resuming: bool


def _plan_run(compiled: Any, ctx: ddp.DistContext, opts: TrainOptions, *, recipe: str | None,
              overrides: Mapping[str, Any] | None, out: str | Path, name: str | None, resume: str | Path | None,
              data_dir: str | Path | None, subset: int | None, spec_text: str | None) -> _RunPlan:
    """Resolve the recipe and the run folder and check a resume; reads files, writes none."""
    resolved = build_recipe(recipe, family=compiled.family, family_args=compiled.family_args,
                            input_shape=tuple(compiled.input_shape), train_args=compiled.train_args,
                            train_spans=compiled.train_spans, spec_source=compiled.source, overrides=overrides,
                            network=compiled.spec)
    ident = runfolder.RunIdentity(spec_text if spec_text is not None else compiled.source.text, compiled.canonical,
                                  resolved.given_text, resolved.resolved_dict())
    if subset is not None and subset < 1:
        raise ArchlangError(f"--subset must be at least 1, got {subset}")
    device = ddp.device_for(opts.device, ctx)
    if resume is None:
        folder = Path(out) / (name or _run_name(compiled, resolved, ident))
        if (folder / "run.json").exists():
            raise ArchlangError("run folder already exists", path=str(folder),
                                hint=f"continue it with --resume {folder}, or pick another --name")
        return _RunPlan(resolved, ident, folder, resolved.name, subset, data_dir, device, resuming=False)
    folder = Path(resume)
    if not folder.is_dir():
        raise ArchlangError("cannot resume: run folder not found", path=str(folder))
    runfolder.check_resume_identity(folder, ident)
    saved = runfolder.read_run_hashes(folder)
    if subset is not None and subset != saved.get("subset"):
        raise ArchlangError(f"cannot resume: this run used --subset {saved.get('subset')}, not {subset}", path=str(folder))
    if data_dir is None:  # the data the run started with, unless told otherwise
        data_dir = saved.get("data_dir")
    return _RunPlan(resolved, ident, folder, saved.get("recipe_name") or resolved.name, saved.get("subset"), data_dir,
                    device, resuming=True)


def _load_data(compiled: Any, plan: _RunPlan, ctx: ddp.DistContext, opts: TrainOptions) -> Dataset:
    """The dataset, checked against the spec. Under torchrun rank 0 reads it first (downloading or
    decoding and caching it once); the other processes then read that copy instead of racing it."""
    r = plan.resolved.recipe

    def load() -> Dataset:
        data = sources.load_for_recipe(r, compiled.num_classes, Path(plan.data_dir) if plan.data_dir else None,
                                       download=opts.download, cache_dir=opts.cache_dir,
                                       input_shape=tuple(compiled.input_shape))
        _check_fit(compiled, data)
        return data

    first = ddp.agreed(ctx, lambda: load() if ctx.is_main else None)
    rest = ddp.agreed(ctx, lambda: None if ctx.is_main else load())
    return first if ctx.is_main else rest


@dataclass
class _Start:
    """Where training starts: the beginning, or the newest good checkpoint of a resumed run."""

    epoch: int = 0
    step: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)
    history: list[dict[str, Any]] = field(default_factory=list)
    good: Path | None = None


def _start(compiled: Any, plan: _RunPlan, data: Dataset, model: nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: Any, ctx: ddp.DistContext, opts: TrainOptions) -> _Start:
    """Write a new run folder's identity (rank 0), or load the newest good checkpoint (every rank: the same file)."""
    folder = plan.folder
    if not plan.resuming:
        if ctx.is_main:
            runfolder.write_identity(folder, plan.ident, {
                "recipe_name": plan.recipe_label, "family": compiled.family, "dataset": data.name,
                "data_origin": data.origin, "subset": plan.subset,
                "data_dir": str(Path(plan.data_dir).resolve()) if plan.data_dir else None,
                "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "log"},
                "torch": torch.__version__, "params": compiled.total_params, "processes": ctx.world_size,
            })
            runfolder.rewrite_metrics(folder, [])
        return _Start()
    state = ckpt.latest_good_checkpoint(folder / "checkpoints", warn=opts.log)
    if state is None:
        if ctx.is_main:
            runfolder.rewrite_metrics(folder, [])
        return _Start()
    model.load_state_dict(state.model)
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    ckpt.restore_rng(state.rng_tensors, state.rng_scalars)  # rank 0's; ddp.restore_rng then gives each rank its own
    p = state.progress
    ddp.restore_rng(ctx, p.get("rank_rng"), plan.device, plan.resolved.recipe.seed, p["epoch"], p["step"])
    if p.get("world_size", 1) != ctx.world_size:
        opts.log(f"warning: {state.path.name} was written by {p.get('world_size', 1)} process(es) and is resumed by "
                 f"{ctx.world_size}: the global batches are the same, but not the random draws (dropout) of the "
                 "processes other than rank 0, nor batch norm's per-process statistics")
    history = p["history"]
    if ctx.is_main:
        runfolder.rewrite_metrics(folder, history)
    opts.log(f"resuming {folder} at epoch {p['epoch'] + 1}, step {p['step']} from {state.path.name}")
    return _Start(p["epoch"], p["step"], EpochTotals(**p["totals"]), history, state.path)


def train(
    compiled: Any,
    *,
    recipe: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    resume: str | Path | None = None,
    data_dir: str | Path | None = None,
    subset: int | None = None,
    options: TrainOptions | None = None,
    spec_text: str | None = None,
) -> Path:
    """Train a compiled spec with a paper recipe; return the run folder.

    recipe: a shipped recipe name or a YAML path (default: the family's recipe).
    overrides: recipe fields that win over the YAML and the spec's train(...) clause.
    resume: a run folder to continue from its newest good checkpoint (same spec and recipe).

    Under torchrun (WORLD_SIZE > 1 in the environment) every process calls this; they train
    one DistributedDataParallel model on shards of the recipe's global batch, and rank 0
    alone writes the run folder (see archlang.train.ddp). Errors every process meets are
    raised on all of them, as ddp.ReportedByRankZero on ranks > 0.
    """
    opts = options or TrainOptions()
    with ddp.session(opts.device) as ctx:
        if not ctx.is_main:  # one voice per launch: rank 0 logs and draws the progress bar
            opts = replace(opts, progress=False, log=_quiet)
        plan = ddp.agreed(ctx, lambda: _plan_run(compiled, ctx, opts, recipe=recipe, overrides=overrides, out=out,
                                                 name=name, resume=resume, data_dir=data_dir, subset=subset,
                                                 spec_text=spec_text))
        return _train_planned(compiled, plan, ctx, opts)


def _train_planned(compiled: Any, plan: _RunPlan, ctx: ddp.DistContext, opts: TrainOptions) -> Path:
    r, folder, device = plan.resolved.recipe, plan.folder, plan.device
    if opts.threads:
        torch.set_num_threads(opts.threads)
    tune_allocator()
    compiled.check_buildable(r.batch_size, training=True, device=device)  # before loading any data
    data = _load_data(compiled, plan, ctx, opts)
    train_split = data.train.first(plan.subset) if plan.subset else data.train
    ddp.agreed(ctx, lambda: ddp.check_batch_split(ctx, r.batch_size, len(train_split)))

    torch.manual_seed(r.seed)
    model = compiled.build()
    model_tools.apply_init(model, r)
    model.to(device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = model_tools.build_optimizer(model, r, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=r.lr_factor)
    ddp.seed_rank(ctx, r.seed)  # after the (identical) init: each process its own dropout stream
    needed = 3 * ckpt.estimate_checkpoint_bytes(model, 2) + (64 << 20)
    ddp.agreed(ctx, lambda: runfolder.check_writable(folder, needed) if ctx.is_main else None)
    start = ddp.agreed(ctx, lambda: _start(compiled, plan, data, model, optimizer, scheduler, ctx, opts))
    ddp.same_everywhere(ctx, "the checkpoint to resume from", [start.epoch, start.step])
    start_epoch, start_step, totals, history, good = start.epoch, start.step, start.totals, start.history, start.good

    dtype = torch.float32
    mean, std = sources.statistics(r, data)
    common: dict[str, Any] = {"mean": mean, "std": std, "normalize": r.normalize, "device": device,
                              "channels_last": opts.channels_last, "dtype": dtype, "workers": opts.workers}
    train_loader = sources.make_loader(train_split, r, train=True, batch_size=r.batch_size, seed=r.seed, rank=ctx.rank,
                                       world_size=ctx.world_size, **common)
    test_loader = sources.make_loader(data.test, r, train=False, batch_size=r.eval_batch_size, **common)
    # DDP wraps the model after the optimizer and the checkpoint are loaded: its construction
    # broadcasts rank 0's weights and buffers, so every process starts from the same state.
    net = ddp.wrap(model, ctx, device)
    runner = torch.compile(net) if opts.compile else net
    # Rank 0 evaluates the whole test set alone, on the bare module (no DDP collectives), in
    # the single-process batches: the same test metrics a single process computes on these weights.
    evaluator = runner if not ctx.enabled else (torch.compile(model) if opts.compile else model)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16)

    def save(epoch: int, step: int) -> Path:
        """A checkpoint, written by rank 0; a collective (every process's RNG state goes in it)."""
        rank_rng = ddp.gather_rng(ctx, device)
        if not ctx.is_main:
            return folder / "checkpoints" / ckpt.checkpoint_name(epoch, step)
        progress = {"epoch": epoch, "step": step, "totals": asdict(totals), "history": history, "run_hash": plan.ident.run_hash,
                    "world_size": ctx.world_size, **({"rank_rng": rank_rng} if rank_rng else {})}
        return ckpt.save_checkpoint(folder / "checkpoints", model=model, optimizer=optimizer, scheduler=scheduler,
                                    epoch=epoch, step=step, progress=progress)

    def out_of_time() -> bool:
        return opts.time_limit_s is not None and time.monotonic() - call_start >= opts.time_limit_s

    bar = _Progress(opts.progress and sys.stderr.isatty())
    steps_this_call, call_start, last_save = 0, time.monotonic(), time.monotonic()
    status = "finished"
    try:
        for epoch in range(start_epoch, r.epochs):
            bar.epoch(f"epoch {epoch + 1}/{r.epochs}", len(train_loader), start_step)
            runner.train()
            t0 = time.monotonic() - totals.seconds
            for step_offset, (x, y) in enumerate(train_loader.batches(epoch, start_step)):
                step = start_step + step_offset
                with autocast():
                    out_ = runner(x)
                    loss = F.cross_entropy(out_.float(), y)
                value = loss.item()
                # One allreduce per step, before backward: the global batch's loss and error, and the
                # decisions that come from each process's clock, so that every process sees the same
                # NaN, stops at the same step and checkpoints at the same step.
                loss_sum, wrong, seen, time_up, save_due = ddp.sum_over_ranks(ctx, [
                    value * y.numel(), int((out_.argmax(1) != y).sum()), y.numel(),
                    out_of_time(), time.monotonic() - last_save >= opts.checkpoint_every_s], device)
                if not math.isfinite(loss_sum):
                    raise _shared(ctx, _nonfinite(folder, loss_sum / seen, epoch + 1, step + 1, good))
                optimizer.zero_grad(set_to_none=True)
                _ddp_loss(loss, y.numel(), train_loader.global_count(step), ctx).backward()
                optimizer.step()
                totals.loss_sum += loss_sum
                totals.wrong += int(wrong)
                totals.seen += int(seen)
                steps_this_call += 1
                train_loss, train_error = totals.record()
                bar.step(f"loss {train_loss:.4f} err {train_error:5.2f}%")
                stop = (opts.max_steps is not None and steps_this_call >= opts.max_steps) or bool(time_up)
                if (stop or save_due) and step + 1 < len(train_loader):
                    totals.seconds = time.monotonic() - t0
                    good, last_save = save(epoch, step + 1), time.monotonic()
                if stop and step + 1 < len(train_loader):
                    status = "stopped"
                    break
            if status == "stopped":
                break
            start_step = 0
            test = evaluate(evaluator, test_loader, autocast) if ctx.is_main else EvalResult(None, None, None)
            runner.train()  # the evaluator may be the bare module: hand it back in training mode
            train_loss, train_error = totals.record()
            record = {
                "epoch": epoch + 1, "train_loss": train_loss, "train_error": train_error,
                "test_loss": test.loss, "test_error": test.error,
                **({"test_error_top5": test.error_top5} if test.error_top5 is not None else {}),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.monotonic() - t0, 3), "steps": len(train_loader),
                "gates_k": model_tools.gate_values(model), "dirac_a": model_tools.dirac_values(model),
            }
            history.append(record)
            if ctx.is_main:  # the other processes have no test metrics: they did not evaluate
                runfolder.append_metrics(folder, record)
                opts.log(f"epoch {epoch + 1}/{r.epochs}: train loss {train_loss:.4f}, train error {train_error:.2f}%, "
                         f"test error {test.error:.2f}%, lr {record['lr']:.4g}, {record['seconds']:.1f} s")
            scheduler.step()
            totals = EpochTotals()
            good, last_save = save(epoch + 1, 0), time.monotonic()
            stop = (opts.max_steps is not None and steps_this_call >= opts.max_steps) or ddp.any_rank(ctx, out_of_time(), device)
            if stop and epoch + 1 < r.epochs:
                status = "stopped"
                break
    except ArchlangError:
        status = "diverged"
        if ctx.is_main:
            _finish(folder, model, history, compiled, plan.recipe_label, plan.resolved, data, plan.subset, status,
                    write_model=False)
        raise
    finally:
        bar.close()
    if ctx.is_main:
        _finish(folder, model, history, compiled, plan.recipe_label, plan.resolved, data, plan.subset, status,
                write_model=status == "finished")
    # Every process returns only once rank 0 has written the run folder.
    ddp.same_everywhere(ctx, "how training ended", status)
    return folder


def _finish(folder: Path, model: nn.Module, history: list[dict[str, Any]], compiled: Any, recipe_label: str,
            resolved: ResolvedRecipe,
            data: Dataset, subset: int | None, status: str, write_model: bool) -> None:
    if write_model:
        ckpt.atomic_write_bytes(folder / "model.safetensors", _model_state_bytes(model))
    last = history[-1] if history else {}
    k = list(last.get("gates_k", {}).values())
    summary = {
        "status": status,
        "epochs_done": len(history),
        "epochs": resolved.recipe.epochs,
        "recipe": recipe_label,
        "family": compiled.family,
        "dataset": data.name,
        "train_images": subset or len(data.train),
        "params": compiled.total_params,
        "final_test_error": last.get("test_error"),
        "final_test_error_top5": last.get("test_error_top5"),
        "best_test_error": min((h["test_error"] for h in history), default=None),
        "final_train_loss": last.get("train_loss"),
        "final_train_error": last.get("train_error"),
        "mean_k": sum(k) / len(k) if k else None,
        "seconds": round(sum(h["seconds"] for h in history), 3),
    }
    ckpt.atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    plots.write_plots(folder, history, f"{compiled.family or 'net'} / {recipe_label}")
