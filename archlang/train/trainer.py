"""The training loop as named phases: setup, resume, run_epoch, evaluate, checkpoint, finish.

`Trainer.fit` and `Trainer.run_epoch` are the whole loop, read top to bottom; everything else is a
phase they call. One process, or several under torchrun (DistributedDataParallel; see ddp.py):
rank 0 alone writes the run folder, every decision taken from a clock or a signal is agreed by all
processes at a read-back, so they stop, checkpoint and fail at the same step.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlang.compiler import Compiled
from archlang.errors import ArchlangError
from archlang.runs import MetricsRow, Progress, Summary, Totals
from archlang.runs import rng as run_rng
from archlang.runs.checkpoint import checkpoint_name, estimate_checkpoint_bytes, latest_good_checkpoint
from archlang.runs.state import host_tensors
from archlang.train import ddp, model_tools, plots, sources
from archlang.train.checkpointing import CheckpointWriter, load_into
from archlang.train.compiling import compile_errors_reported, compiled_module
from archlang.train.epochs import epoch_row, run_epochs, save_or_stop, stop_status
from archlang.train.evaluate import EvalResult, evaluate
from archlang.train.logs import TrainLog, header_lines, stop_reason
from archlang.train.meter import Meter
from archlang.train.options import TrainOptions, configure_backends, configure_threads, environment, tune_allocator
from archlang.train.plan import RunPlan, load_data
from archlang.train.progress_bar import ProgressBar
from archlang.train.signals import SignalWatch, TrainingInterrupted


def _ddp_loss(loss: torch.Tensor, local_n: int, global_n: int, ctx: ddp.DistContext) -> torch.Tensor:
    """The loss to backpropagate so that DDP's gradient average is the gradient of the global batch mean.

    DDP averages the processes' gradients; with equal shards that is exactly the batch mean.
    A short last batch splits unevenly (sizes differ by one), so each mean is weighted by its share.
    """
    if not ctx.enabled or local_n * ctx.world_size == global_n:
        return loss
    return loss * (local_n * ctx.world_size / global_n)


class Trainer:
    def __init__(self, compiled: Compiled, plan: RunPlan, ctx: ddp.DistContext, opts: TrainOptions) -> None:
        self.compiled, self.plan, self.ctx, self.opts = compiled, plan, ctx, opts
        self.recipe, self.run, self.device = plan.resolved.recipe, plan.run, plan.device
        self.sync_every = opts.sync_every or (50 if self.device.type == "cuda" else 1)
        self.history: list[MetricsRow] = []
        self.start_epoch, self.start_step = 0, 0
        self.meter = Meter(self.device, ctx, Totals())
        self.steps_this_call, self.stopped_at = 0, (0, 0)
        self.signals = SignalWatch()
        self.bar = ProgressBar(False)
        self.diverged = False
        self.last_checkpoint: Path | None = None

    # ---- the loop --------------------------------------------------------------------------

    def train(self) -> Path:
        self.setup()
        ddp.agreed(self.ctx, self.resume)
        ddp.same_everywhere(self.ctx, "the checkpoint to resume from", [self.start_epoch, self.start_step])
        self.wrap()
        self.logs = self.open_logs()
        self.call_start = self.last_save = time.monotonic()
        with self.signals:
            try:
                status = compile_errors_reported(self.fit) if self.opts.compile else self.fit()
            except ArchlangError:
                with contextlib.suppress(ArchlangError):  # the first error is the one to report
                    self.finish("diverged" if self.diverged else "failed")
                raise
        self.finish(status)
        ddp.same_everywhere(self.ctx, "how training ended", status)  # return once rank 0 has written
        if status == "interrupted":
            raise TrainingInterrupted(self.signals.received or 15, self.plan.folder, *self.stopped_at)
        return self.plan.folder

    def fit(self) -> str:
        """Epochs from the resume point on; returns how training ended."""
        self.bar = ProgressBar(self.opts.progress and self.ctx.is_main and _stderr_is_tty())
        try:
            return run_epochs(self)
        finally:
            self.bar.close()

    def run_epoch(self, epoch: int) -> str | None:
        """One epoch's steps from the resume point; returns a stop status if it stopped inside the epoch."""
        loader, start = self.train_loader, self.start_step
        self.start_step = 0
        if model_tools.resets_momentum(self.recipe, epoch, start):
            model_tools.reset_momentum(self.optimizer)
        self.bar.epoch(f"epoch {epoch + 1}/{self.recipe.epochs}", len(loader), start)
        self.runner.train()
        self.t0 = time.monotonic() - self.meter_seconds
        last_read = start
        for step, (x, y) in enumerate(loader.batches(epoch, start), start):
            with self.autocast():
                out = self.runner(x)
                loss = F.cross_entropy(out.float(), y)
            self.meter.add(loss, out, y)
            self.steps_this_call += 1
            last = step + 1 == len(loader)
            read = last or (step + 1) % self.sync_every == 0 or self.steps_this_call == self.opts.max_steps
            if read:  # before backward: a non-finite loss must not reach the weights we keep
                flags = self.read_back(epoch, step, last_read)
                last_read = step + 1
            self.optimizer.zero_grad(set_to_none=True)
            _ddp_loss(loss, y.numel(), loader.global_count(step), self.ctx).backward()
            self.optimizer.step()
            if not read or last:
                continue
            time_up, save_due, signaled = flags
            if stop := save_or_stop(self, epoch, step + 1, stop_status(self, time_up, signaled), save_due):
                return stop
        return None

    # ---- phases ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Data, model, optimizer, scheduler and loaders, in an order that keeps runs reproducible."""
        r, ctx, opts, device = self.recipe, self.ctx, self.opts, self.device
        configure_threads(opts)
        tune_allocator()
        configure_backends(device, opts)
        self.data = load_data(self.compiled, self.plan, ctx, opts)
        train_split = self.data.train.first(self.plan.subset) if self.plan.subset else self.data.train
        # --eval-subset: quick trials evaluate the first N test images, not all of them every epoch
        self.train_split, self.test_split = train_split, self.data.test.first(opts.eval_subset) if opts.eval_subset else self.data.test
        ddp.agreed(ctx, lambda: ddp.check_batch_split(ctx, r.batch_size, len(train_split)))
        torch.manual_seed(r.seed)
        self.model: nn.Module = self.compiled.build()
        model_tools.apply_init(self.model, r)
        self.model.to(device)
        if opts.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = model_tools.build_optimizer(self.model, r, device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=r.lr_factor)
        ddp.seed_rank(ctx, r.seed)  # after the (identical) init: each process its own dropout stream
        needed = 3 * estimate_checkpoint_bytes(self.model, 2) + (64 << 20)
        ddp.agreed(ctx, lambda: self.run.check_writable(needed) if ctx.is_main else None)
        self.writer = CheckpointWriter(self.run.checkpoints, background=device.type == "cuda")
        mean, std = sources.statistics(r, self.data)
        common: dict[str, Any] = {"mean": mean, "std": std, "normalize": r.normalize, "device": device,
                                  "channels_last": opts.channels_last, "dtype": torch.float32, "workers": opts.workers,
                                  "whiten": sources.whitening(r, self.data, opts.cache_dir, device)}
        self.train_loader = sources.make_loader(train_split, r, train=True, batch_size=r.batch_size, seed=r.seed,
                                                rank=ctx.rank, world_size=ctx.world_size, **common)
        self.test_loader = sources.make_loader(self.test_split, r, train=False, batch_size=r.eval_batch_size, **common)
        self.meter_seconds = 0.0

    def resume(self) -> None:
        """A new run's identity files (rank 0), or the newest good checkpoint (every rank: the same file)."""
        if not self.plan.resuming:
            if self.ctx.is_main:
                self.run.write_identity(self.plan.ident, self._run_info())
                self.run.rewrite_metrics([])
            return
        state = latest_good_checkpoint(self.run.checkpoints, warn=self.opts.log)
        if state is None:
            if self.ctx.is_main:
                self.run.rewrite_metrics([])
            return
        p = state.progress
        if p.run_hash != self.plan.run_hash:
            raise ArchlangError(f"checkpoint {state.path.name} belongs to another run ({p.run_hash[:16]}), "
                                f"not to this one ({self.plan.run_hash[:16]})", path=str(state.path),
                                hint="move it out of checkpoints/ to resume from the one before it")
        load_into(state, self.model, self.optimizer, self.scheduler)
        self._restore_rng(p)
        self.history = list(p.history)
        if self.ctx.is_main:
            self.run.rewrite_metrics(self.history)
        self.start_epoch, self.start_step = p.epoch, p.step
        self.meter, self.meter_seconds = Meter(self.device, self.ctx, p.totals), p.totals.seconds
        self.last_checkpoint = state.path
        self.opts.log(f"resuming {self.plan.folder} at epoch {p.epoch + 1}, step {p.step} from {state.path.name}")

    def open_logs(self) -> TrainLog:
        """CSV and TensorBoard logs (rank 0), and the start-up header."""
        resumed = (self.start_epoch, self.start_step) if self.plan.resuming and (self.start_epoch or self.start_step) else None
        at = resumed[0] * len(self.train_loader) + resumed[1] if resumed else None
        logs = TrainLog(self.run, enabled=self.ctx.is_main, every=self.opts.log_every, log=self.opts.log,
                        plain=not (self.opts.progress and _stderr_is_tty()), resumed_at=at)
        logs.header(header_lines(
            spec=self.compiled.canonical, params=self.compiled.total_params, recipe=self.recipe,
            recipe_name=self.plan.recipe_label, dataset=self.data.name, train_images=len(self.train_split),
            test_images=len(self.test_split), device=str(self.device), threads=torch.get_num_threads(),
            processes=self.ctx.world_size, folder=self.plan.folder, resumed=resumed))
        return logs

    def wrap(self) -> None:
        # DDP wraps the model after the checkpoint is loaded: its construction broadcasts rank 0's
        # weights and buffers. Rank 0 evaluates alone on the bare module (no collectives).
        # Compiled inside DDP, not around it: the compiled regions see no collectives.
        self.runner = ddp.wrap(compiled_module(self.model) if self.opts.compile else self.model, self.ctx, self.device)
        # Evaluation on the bare module, eager: under DDP no collectives, under --compile no second
        # compilation of every chunk for eval mode (one forward pass an epoch is not worth it).
        self.evaluator = self.model

    def evaluate(self) -> EvalResult:
        if not self.ctx.is_main:
            return EvalResult(None, None, None)
        result = evaluate(self.evaluator, self.test_loader, self.autocast)
        self.runner.train()  # the evaluator may be the bare module: hand it back in training mode
        return result

    def end_epoch(self, epoch: int) -> None:
        test = self.evaluate()
        row = epoch_row(epoch, self.meter.record(), test, lr=self.optimizer.param_groups[0]["lr"],
                        seconds=time.monotonic() - self.t0, steps=len(self.train_loader),
                        gates_k=model_tools.gate_values(self.model), dirac_a=model_tools.dirac_values(self.model))
        self.history.append(row)
        if self.ctx.is_main:  # the other processes have no test metrics: they did not evaluate
            self.run.append_metrics(row)
            self.logs.epoch(row, (epoch + 1) * len(self.train_loader))
            self.opts.log(f"epoch {epoch + 1}/{self.recipe.epochs}: train loss {row.train_loss:.4f}, train error "
                          f"{row.train_error:.2f}%, test error {test.error:.2f}%, lr {row.lr:.4g}, {row.seconds:.1f} s")
        self.scheduler.step()
        self.meter, self.meter_seconds = Meter(self.device, self.ctx, Totals()), 0.0

    def checkpoint(self, epoch: int, step: int) -> None:
        """A checkpoint, written by rank 0; a collective (every process's RNG state goes in it)."""
        states = ddp.gather_rng(self.ctx, self.device)
        self.last_checkpoint = self.run.checkpoints / checkpoint_name(epoch, step)  # every rank names it alike
        if not self.ctx.is_main:
            return
        totals = self.meter.totals(self.meter_seconds if step else 0.0)
        progress = Progress(epoch=epoch, step=step, totals=totals, history=self.history, run_hash=self.plan.run_hash,
                            world_size=self.ctx.world_size, rng=states)
        self.writer.save(self.model, self.optimizer, self.scheduler, progress)
        self.last_save = time.monotonic()

    def finish(self, status: str) -> None:
        """Wait for the checkpoint in flight; final weights (when finished), summary and plots (rank 0)."""
        self.writer.close()
        if not self.ctx.is_main:
            return
        if status == "finished":
            self.run.write_model(host_tensors(self.model))
        self.run.write_summary(self._summary(status))
        plots.write_plots(self.plan.folder, [h.as_dict() for h in self.history],
                          f"{self.compiled.family or 'net'} / {self.plan.recipe_label}")
        self.logs.close(*stop_reason(status, max_steps=self.opts.max_steps, steps=self.steps_this_call,
                                     time_limit_s=self.opts.time_limit_s, signum=self.signals.received,
                                     folder=self.plan.folder))

    # ---- helpers ---------------------------------------------------------------------------

    def read_back(self, epoch: int, step: int, first_step: int) -> list[bool]:
        """The loss sums since the last read-back; a non-finite loss stops training; the agreed decisions."""
        result = self.meter.read_back([self.out_of_time(), time.monotonic() - self.last_save >= self.opts.checkpoint_every_s,
                                       self.signaled()])
        if result.first_bad is not None:
            self.diverged = True
            self.writer.flush()
            good = self.last_checkpoint
            kept = f"the last good checkpoint is {good}" if good else "no checkpoint was written yet"
            error = ArchlangError(f"loss became {result.bad_loss} at epoch {epoch + 1}, step {first_step + result.first_bad + 1}; "
                                  f"training stopped ({kept})", path=str(self.plan.folder),
                                  hint="lower the learning rate (e.g. --lr) or check the data normalisation")
            raise error if self.ctx.is_main else ddp.ReportedByRankZero(error.message, path=error.path, hint=error.hint)
        train_loss, train_error = self.meter.record()
        self.bar.advance(step + 1 - first_step, f"loss {train_loss:.4f} err {train_error:5.2f}%")
        self.logs.step(global_step=epoch * len(self.train_loader) + step + 1, epoch=epoch, step=step + 1,
                       steps=len(self.train_loader), loss=train_loss, error=train_error,
                       lr=self.optimizer.param_groups[0]["lr"], seconds=time.monotonic() - self.t0)
        return result.flags

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    def stop_flags(self) -> tuple[bool, bool]:
        """(time up, signaled), agreed by every process: they stop at the same epoch."""
        time_up, signaled = self.agreed_flags([self.out_of_time(), self.signaled()])
        return time_up, signaled

    def agreed_flags(self, flags: list[bool]) -> list[bool]:
        return [v > 0 for v in ddp.sum_over_ranks(self.ctx, [float(f) for f in flags], self.device)]

    def out_of_time(self) -> bool:
        return self.opts.time_limit_s is not None and time.monotonic() - self.call_start >= self.opts.time_limit_s

    def signaled(self) -> bool:
        return self.signals.received is not None

    def autocast(self) -> Any:
        if not self.opts.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _restore_rng(self, p: Progress) -> None:
        mine = p.rng[self.ctx.rank] if len(p.rng) == self.ctx.world_size else None
        run_rng.restore(mine or p.rng[0], self.opts.log)
        if mine is None and self.ctx.rank > 0:  # no state saved for this rank: a fresh stream of its own
            ddp.seed_rank(self.ctx, self.recipe.seed, p.epoch, p.step)
        if p.world_size != self.ctx.world_size:
            self.opts.log(f"warning: the checkpoint was written by {p.world_size} process(es) and is resumed by "
                          f"{self.ctx.world_size}: the global batches are the same, but not the random draws (dropout) "
                          "of the processes other than rank 0, nor batch norm's per-process statistics")

    def _run_info(self) -> dict[str, Any]:
        return run_info(self.compiled, self.plan, self.data, self.opts, self.device, self.ctx.world_size)

    def _summary(self, status: str) -> Summary:
        return run_summary(status, self.history, self.compiled, self.plan, self.data)


def run_info(compiled: Compiled, plan: RunPlan, data: Any, opts: TrainOptions, device: torch.device,
             processes: int) -> dict[str, Any]:
    """run.json's fields beyond the identity (a grouped run writes them for each copy too)."""
    return {"recipe_name": plan.recipe_label, "family": compiled.family, "dataset": data.name,
            "data_origin": data.origin, "data_dir": str(Path(plan.data_dir).resolve()) if plan.data_dir else None,
            "options": opts.recorded(), "torch": torch.__version__, "params": compiled.total_params,
            "processes": processes, "environment": environment(device)}


def run_summary(status: str, history: list[MetricsRow], compiled: Compiled, plan: RunPlan, data: Any) -> Summary:
    """summary.json from a run's metric history."""
    last = history[-1] if history else None
    k = list(last.gates_k.values()) if last else []
    errors = [h.test_error for h in history if h.test_error is not None]
    return Summary(status=status, epochs_done=len(history), epochs=plan.resolved.recipe.epochs,
                   recipe=plan.recipe_label, family=compiled.family, dataset=data.name,
                   train_images=plan.subset or len(data.train), params=compiled.total_params,
                   final_test_error=last.test_error if last else None,
                   final_test_error_top5=last.test_error_top5 if last else None,
                   best_test_error=min(errors, default=None),
                   final_train_loss=last.train_loss if last else None,
                   final_train_error=last.train_error if last else None,
                   mean_k=sum(k) / len(k) if k else None,
                   seconds=round(sum(h.seconds for h in history), 3))


def _stderr_is_tty() -> bool:
    import sys

    return sys.stderr.isatty()
