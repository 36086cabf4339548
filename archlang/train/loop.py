"""The training loop: one run folder, resumable at any checkpoint, bit-exact on CPU."""

from __future__ import annotations

import ctypes
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlang.errors import ArchlangError
from archlang.train import checkpoint as ckpt
from archlang.train import model_tools, plots, runfolder
from archlang.train.data import BatchLoader, Dataset, load_dataset
from archlang.train.recipes import Recipe, ResolvedRecipe, build_recipe


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


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ArchlangError(f"--device {name}: no CUDA device is available here", hint="use --device cpu")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ArchlangError(f"unknown device '{name}'", hint="use cpu or cuda")
    return torch.device(name)


def _dataset_name(recipe: Recipe, num_classes: int) -> str:
    if recipe.dataset == "cifar":
        return "cifar100" if num_classes == 100 else "cifar10"
    return recipe.dataset


def _check_fit(compiled: Any, data: Dataset) -> None:
    shape = tuple(data.train.images.shape[1:])
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


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, autocast: Any) -> tuple[float, float]:
    model.eval()
    loss_sum, wrong, seen = 0.0, 0, 0
    for x, y in loader.batches(0):
        with autocast():
            out = model(x)
        loss_sum += float(F.cross_entropy(out.float(), y, reduction="sum"))
        wrong += int((out.argmax(1) != y).sum())
        seen += int(y.numel())
    return loss_sum / max(1, seen), 100.0 * wrong / max(1, seen)


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
    """
    opts = options or TrainOptions()
    resolved = build_recipe(recipe, family=compiled.family, family_args=compiled.family_args,
                            input_shape=tuple(compiled.input_shape), train_args=compiled.train_args,
                            train_spans=compiled.train_spans, spec_source=compiled.source, overrides=overrides)
    r = resolved.recipe
    ident = runfolder.RunIdentity(spec_text if spec_text is not None else compiled.source.text, compiled.canonical,
                                  resolved.given_text, resolved.resolved_dict())
    if subset is not None and subset < 1:
        raise ArchlangError(f"--subset must be at least 1, got {subset}")
    device = _device(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    tune_allocator()

    if resume is not None:
        folder = Path(resume)
        if not folder.is_dir():
            raise ArchlangError("cannot resume: run folder not found", path=str(folder))
        runfolder.check_resume_identity(folder, ident)
        saved_subset = runfolder.read_run_hashes(folder).get("subset")
        if subset is not None and subset != saved_subset:
            raise ArchlangError(f"cannot resume: this run used --subset {saved_subset}, not {subset}", path=str(folder))
        subset = saved_subset
        if data_dir is None:  # the data the run started with, unless told otherwise
            data_dir = runfolder.read_run_hashes(folder).get("data_dir")
        recipe_label = runfolder.read_run_hashes(folder).get("recipe_name") or resolved.name
    else:
        recipe_label = resolved.name
        folder = Path(out) / (name or _run_name(compiled, resolved, ident))
        if (folder / "run.json").exists():
            raise ArchlangError("run folder already exists", path=str(folder),
                                hint=f"continue it with --resume {folder}, or pick another --name")

    data = load_dataset(_dataset_name(r, compiled.num_classes), data_dir=Path(data_dir) if data_dir else None,
                        download=opts.download, cache_dir=opts.cache_dir, extra=r.train_split == "train+extra")
    _check_fit(compiled, data)
    train_split = data.train.first(subset) if subset else data.train

    torch.manual_seed(r.seed)
    model = compiled.build()
    model_tools.apply_init(model, r)
    model.to(device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = model_tools.build_optimizer(model, r, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=r.lr_factor)
    runfolder.check_writable(folder, 3 * ckpt.estimate_checkpoint_bytes(model, 2) + (64 << 20))

    start_epoch, start_step, totals, history = 0, 0, EpochTotals(), []
    good: Path | None = None
    if resume is not None:
        state = ckpt.latest_good_checkpoint(folder / "checkpoints", warn=opts.log)
        if state is not None:
            model.load_state_dict(state.model)
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
            ckpt.restore_rng(state.rng_tensors, state.rng_scalars)
            start_epoch, start_step = state.progress["epoch"], state.progress["step"]
            totals = EpochTotals(**state.progress["totals"])
            history = state.progress["history"]
            good = state.path
            opts.log(f"resuming {folder} at epoch {start_epoch + 1}, step {start_step} from {state.path.name}")
        runfolder.rewrite_metrics(folder, history)
    else:
        runfolder.write_identity(folder, ident, {
            "recipe_name": recipe_label, "family": compiled.family, "dataset": data.name, "data_origin": data.origin,
            "subset": subset, "data_dir": str(Path(data_dir).resolve()) if data_dir else None, "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "log"},
            "torch": torch.__version__, "params": compiled.total_params,
        })
        runfolder.rewrite_metrics(folder, [])

    dtype = torch.float32
    loader_kwargs: dict[str, Any] = {"mean": data.mean, "std": data.std, "normalize": r.normalize, "device": device,
                                     "channels_last": opts.channels_last, "dtype": dtype}
    train_loader = BatchLoader(train_split, batch_size=r.batch_size, train=True, crop_pad=r.crop_pad, pad_mode=r.pad_mode,
                               flip=r.flip, seed=r.seed, **loader_kwargs)
    test_loader = BatchLoader(data.test, batch_size=r.eval_batch_size, train=False, **loader_kwargs)
    runner = torch.compile(model) if opts.compile else model

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16)

    def save(epoch: int, step: int) -> Path:
        progress = {"epoch": epoch, "step": step, "totals": asdict(totals), "history": history, "run_hash": ident.run_hash}
        return ckpt.save_checkpoint(folder / "checkpoints", model=model, optimizer=optimizer, scheduler=scheduler,
                                    epoch=epoch, step=step, progress=progress)

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
                if not math.isfinite(value):
                    raise _nonfinite(folder, value, epoch + 1, step + 1, good)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals.loss_sum += value * y.numel()
                totals.wrong += int((out_.argmax(1) != y).sum())
                totals.seen += int(y.numel())
                steps_this_call += 1
                train_loss, train_error = totals.record()
                bar.step(f"loss {train_loss:.4f} err {train_error:5.2f}%")
                now = time.monotonic()
                stop = (opts.max_steps is not None and steps_this_call >= opts.max_steps) or (
                    opts.time_limit_s is not None and now - call_start >= opts.time_limit_s)
                if (stop or now - last_save >= opts.checkpoint_every_s) and step + 1 < len(train_loader):
                    totals.seconds = now - t0
                    good, last_save = save(epoch, step + 1), time.monotonic()
                if stop and step + 1 < len(train_loader):
                    status = "stopped"
                    break
            if status == "stopped":
                break
            start_step = 0
            test_loss, test_error = evaluate(runner, test_loader, autocast)
            train_loss, train_error = totals.record()
            record = {
                "epoch": epoch + 1, "train_loss": train_loss, "train_error": train_error,
                "test_loss": test_loss, "test_error": test_error, "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.monotonic() - t0, 3), "steps": len(train_loader),
                "gates_k": model_tools.gate_values(model), "dirac_a": model_tools.dirac_values(model),
            }
            history.append(record)
            runfolder.append_metrics(folder, record)
            opts.log(f"epoch {epoch + 1}/{r.epochs}: train loss {train_loss:.4f}, train error {train_error:.2f}%, "
                     f"test error {test_error:.2f}%, lr {record['lr']:.4g}, {record['seconds']:.1f} s")
            scheduler.step()
            totals = EpochTotals()
            good, last_save = save(epoch + 1, 0), time.monotonic()
            stop = (opts.max_steps is not None and steps_this_call >= opts.max_steps) or (
                opts.time_limit_s is not None and time.monotonic() - call_start >= opts.time_limit_s)
            if stop and epoch + 1 < r.epochs:
                status = "stopped"
                break
    except ArchlangError:
        status = "diverged"
        _finish(folder, model, history, compiled, recipe_label, resolved, data, subset, status, write_model=False)
        raise
    finally:
        bar.close()
    _finish(folder, model, history, compiled, recipe_label, resolved, data, subset, status, write_model=status == "finished")
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
        "best_test_error": min((h["test_error"] for h in history), default=None),
        "final_train_loss": last.get("train_loss"),
        "final_train_error": last.get("train_error"),
        "mean_k": sum(k) / len(k) if k else None,
        "seconds": round(sum(h["seconds"] for h in history), 3),
    }
    ckpt.atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    plots.write_plots(folder, history, f"{compiled.family or 'net'} / {recipe_label}")
