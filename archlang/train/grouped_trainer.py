"""The loop of a grouped training: G copies, one batched model, one optimizer step for all.

Each copy is planned, identified and written as an ordinary run folder (archlang.runs), so every
analysis reads it as a single run. Copy i starts as a single run of its network and recipe would
(same build, same init), draws its batches in its own seed's order and gets its own recipe's
optimizer settings and lr schedule, so without dropout its weights follow the single run's (test:
to 1e-5). The whole group's state is one grouped checkpoint in the first copy's checkpoints/.
A copy whose loss stops being finite ends `diverged`, as its single run would; the others train
on (the copies share no parameter, so its NaNs reach no other copy), and the call then reports it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlang.build import build
from archlang.compiler import Compiled
from archlang.errors import ArchlangError, Source, shorten
from archlang.grouped import (
    CopyHyper,
    GroupedModel,
    GroupedOptimizer,
    compile_group,
    grouped_loss,
    grouped_optimizer,
    split_state,
)
from archlang.grouped.layers import GGate
from archlang.ir import core
from archlang.runs import MetricsRow, Progress, RunFolder, Totals
from archlang.runs import rng as run_rng
from archlang.runs.checkpoint import estimate_checkpoint_bytes, latest_good_grouped, write_grouped
from archlang.runs.state import to_host
from archlang.train import ddp, model_tools, plots, sources
from archlang.train.compiling import compile_available, compile_errors_reported
from archlang.train.data.batching import grouped_batches
from archlang.train.epochs import epoch_row, run_epochs, save_or_stop, stop_status
from archlang.train.evaluate import evaluate_grouped
from archlang.train.meter import GroupMeter
from archlang.train.options import TrainOptions, configure_backends, configure_threads, tune_allocator
from archlang.train.plan import RunPlan, load_data
from archlang.train.recipes import Recipe
from archlang.train.signals import SignalWatch, TrainingInterrupted
from archlang.train.trainer import run_info, run_summary


def copy_hyper(single: nn.Module, recipe: Recipe) -> CopyHyper:
    """A copy's optimizer settings: its recipe's, each parameter's lr multiplier and weight decay by
    the single trainer's rule (model_tools.parameter_settings, read off the single network)."""
    return CopyHyper.from_recipe(recipe, settings=model_tools.parameter_settings(single, recipe))


def build_group(networks: Sequence[core.Seq], recipes: Sequence[Recipe], *, device: torch.device | None = None,
                compile_: bool = False, source: Source | None = None) -> tuple[GroupedModel, GroupedOptimizer]:
    """Copy i as the single run of recipes[i] starts (its seed's build and its recipe's init) and one
    optimizer that steps each copy with its recipe's settings (copy_hyper). The trainer and every
    script that times a grouped step build it here, so they time what `archlang train --seeds` runs.
    The caller's RNG state is kept (the probe network that names the parameters is built aside)."""
    model = GroupedModel.from_ir(list(networks), [r.seed for r in recipes], source=source,
                                 init=lambda m, i: model_tools.apply_init(m, recipes[i]))
    if device is not None:
        model.to(device)  # before the optimizer: it moves the parameters into one flat buffer
    with torch.random.fork_rng(devices=[]):
        single = build(networks[0])  # names and roles; the copies share one architecture
    optimizer = grouped_optimizer(model, [copy_hyper(single, r) for r in recipes])
    if compile_:
        with compile_available():
            compile_group(model, optimizer)
    return model, optimizer


@dataclass
class CopyState:
    """One copy's run: its network, plan (folder, identity), recipe and batches (its meter: GroupMeter's copy i)."""

    compiled: Compiled
    plan: RunPlan
    loader: Any
    history: list[MetricsRow] = field(default_factory=list)
    diverged: str | None = None  # why its loss stopped being finite; it trains no more

    @property
    def recipe(self) -> Recipe:
        return self.plan.resolved.recipe

    @property
    def run(self) -> RunFolder:
        return self.plan.run

    @property
    def label(self) -> str:
        return self.run.path.name


class GroupedTrainer:
    """Trainer's loop (fit, run_epoch, end_epoch, checkpoint, finish) over G copies at once."""

    def __init__(self, compiled: list[Compiled], plans: list[RunPlan], opts: TrainOptions) -> None:
        # compiled[i] is copy i's network: one architecture, maybe different initial values.
        self.networks, self.plans, self.opts = compiled, plans, opts
        self.compiled = compiled[0]  # what the copies share: input, classes, data
        self.leader, self.device = plans[0].run, plans[0].device
        self.recipe = plans[0].resolved.recipe  # what the copies share: epochs, batch size, data
        self.sync_every = opts.sync_every or (50 if self.device.type == "cuda" else 1)
        self.start_epoch, self.start_step, self.meter_seconds = 0, 0, 0.0
        self.steps_this_call, self.stopped_at = 0, (0, 0)
        self.signals = SignalWatch()

    def train(self) -> list[Path]:
        self.setup()
        self.resume()
        self.call_start = self.last_save = time.monotonic()
        with self.signals:
            try:
                status = compile_errors_reported(self.fit) if self.opts.compile else self.fit()
            except ArchlangError:
                self.finish("failed")
                raise
        self.finish(status)
        if status == "interrupted":
            raise TrainingInterrupted(self.signals.received or 15, self.leader.path, *self.stopped_at)
        self.report_diverged(status)
        return [plan.folder for plan in self.plans]

    def fit(self) -> str:
        return run_epochs(self)

    def run_epoch(self, epoch: int) -> str | None:
        start, self.start_step = self.start_step, 0
        self.optimizer.set_lr_factor([c.recipe.lr_factor(epoch) for c in self.copies])  # LambdaLR's factor
        self.optimizer.reset_momentum([i for i, c in enumerate(self.copies)
                                       if model_tools.resets_momentum(c.recipe, epoch, start)])
        self.model.train()
        self.t0 = time.monotonic() - self.meter_seconds
        steps = len(self.copies[0].loader)
        for step, (x, y) in enumerate(grouped_batches([c.loader for c in self.copies], epoch, start), start):
            logits = self.model(x)
            losses = grouped_loss(logits, y)
            self.meter.add(losses, logits, y)
            self.steps_this_call += 1
            last = step + 1 == steps
            read = last or (step + 1) % self.sync_every == 0 or self.steps_this_call == self.opts.max_steps
            if read:  # before backward: a non-finite loss must not reach the weights we keep
                self.read_back(epoch, step)
            self.optimizer.zero_grad()
            losses.sum().backward()
            self.optimizer.step()
            if not read or last:
                continue
            save_due = time.monotonic() - self.last_save >= self.opts.checkpoint_every_s
            if stop := save_or_stop(self, epoch, step + 1, stop_status(self, *self.stop_flags()), save_due):
                return stop
        return None

    # ---- phases ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Data once, then the grouped model (copy i: seed i's build and init), optimizer, loaders."""
        opts, device, r = self.opts, self.device, self.recipe
        configure_threads(opts)
        tune_allocator()
        configure_backends(device, opts)
        self.data = load_data(self.compiled, self.plans[0], ddp.SINGLE, opts)
        subset = self.plans[0].subset
        train_split = self.data.train.first(subset) if subset else self.data.train
        recipes = [p.resolved.recipe for p in self.plans]
        one_spec = all(c is self.compiled for c in self.networks)  # else copy i's span is in its own source
        self.model, self.optimizer = build_group([c.network for c in self.networks], recipes, device=device,
                                                 compile_=opts.compile,
                                                 source=self.compiled.source if one_spec else None)
        torch.manual_seed(recipes[0].seed)  # the group's one dropout stream
        self.leader.check_writable(3 * estimate_checkpoint_bytes(self.model, 2) + (64 << 20))
        mean, std = sources.statistics(r, self.data)
        common: dict[str, Any] = {"mean": mean, "std": std, "normalize": r.normalize, "device": device,
                                  "channels_last": False, "dtype": torch.float32, "workers": opts.workers}
        self.copies = [CopyState(c, p, sources.make_loader(train_split, p.resolved.recipe, train=True,
                                                        batch_size=r.batch_size, seed=p.resolved.recipe.seed,
                                                        rank=0, world_size=1, **common))
                       for c, p in zip(self.networks, self.plans)]
        self.meter = GroupMeter(device, [Totals()] * len(self.copies))
        test_split = self.data.test.first(opts.eval_subset) if opts.eval_subset else self.data.test
        self.test_loader = sources.make_loader(test_split, r, train=False, batch_size=r.eval_batch_size, **common)

    def resume(self) -> None:
        """New copies' identity files, or the group's newest good grouped checkpoint."""
        if not self.plans[0].resuming:
            group = {"seeds": [c.recipe.seed for c in self.copies], "folders": [c.run.path.name for c in self.copies]}
            for c in self.copies:
                info = run_info(c.compiled, c.plan, self.data, self.opts, self.device, 1)
                c.run.write_identity(c.plan.ident, {**info, "group": group})
                c.run.rewrite_metrics([])
            return
        state = latest_good_grouped(self.leader.checkpoints, warn=self.opts.log)
        if state is None:
            for c in self.copies:
                c.run.rewrite_metrics([])
            return
        if len(state.progress) != len(self.copies) or any(p.run_hash != c.plan.run_hash
                                                          for p, c in zip(state.progress, self.copies)):
            raise ArchlangError(f"grouped checkpoint {state.path.name} belongs to another group of runs",
                                path=str(state.path), hint="move it out of checkpoints/ to resume from the one before it")
        try:
            self.model.load_state_dict(state.model)
            self.optimizer.load_state_dict(state.optimizer)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ArchlangError(f"grouped checkpoint does not fit this network ({shorten(str(exc), 120)})",
                                path=str(state.path)) from None
        first = state.progress[0]
        run_rng.restore(first.rng[0], self.opts.log)
        for p, c in zip(state.progress, self.copies):
            c.history, c.diverged = list(p.history), p.diverged
            c.run.rewrite_metrics(c.history)
        self.meter = GroupMeter(self.device, [p.totals for p in state.progress])
        self.start_epoch, self.start_step, self.meter_seconds = first.epoch, first.step, first.totals.seconds
        self.opts.log(f"resuming {len(self.copies)} grouped runs at epoch {first.epoch + 1}, step {first.step} "
                      f"from {state.path.name}")

    def end_epoch(self, epoch: int) -> None:
        """Test every copy (one pass over the grouped model), one metrics row per copy's folder."""
        results = evaluate_grouped(self.model, self.test_loader, len(self.copies))
        self.model.train()
        seconds = time.monotonic() - self.t0
        for i, (c, test, lr) in enumerate(zip(self.copies, results, self.optimizer.lr)):
            if c.diverged is not None:
                continue
            row = epoch_row(epoch, self.meter.record(i), test, lr=lr, seconds=seconds, steps=len(c.loader),
                            gates_k=_gate_values(self.model, i), dirac_a={})
            c.history.append(row)
            c.run.append_metrics(row)
            self.meter.reset(i)
        errors = ", ".join(f"{r.error:.2f}" if c.diverged is None else "diverged" for c, r in zip(self.copies, results))
        self.opts.log(f"epoch {epoch + 1}/{self.recipe.epochs}: test error per copy {errors} (%), {seconds:.1f} s")
        self.meter_seconds = 0.0

    def checkpoint(self, epoch: int, step: int) -> None:
        rng = [run_rng.capture(self.device)]
        progress = [Progress(epoch=epoch, step=step, totals=self.meter.totals(i, self.meter_seconds if step else 0.0),
                             history=c.history, run_hash=c.plan.run_hash, world_size=1, rng=rng,
                             diverged=c.diverged) for i, c in enumerate(self.copies)]
        write_grouped(self.leader.checkpoints, self.model.state_dict(), self.optimizer.state_dict(), progress)
        self.last_save = time.monotonic()

    def finish(self, status: str) -> None:
        """Each copy's final weights (when finished), summary and plots, in its own run folder."""
        states = split_state(self.model) if status == "finished" else None
        for i, c in enumerate(self.copies):
            if states is not None and c.diverged is None:
                c.run.write_model({k: to_host(v) for k, v in states[i].items()})
            own = "diverged" if c.diverged is not None else status
            c.run.write_summary(run_summary(own, c.history, c.compiled, c.plan, self.data))
            plots.write_plots(c.plan.folder, [h.as_dict() for h in c.history],
                              f"{c.compiled.family or 'net'} / {c.plan.recipe_label}")

    # ---- helpers ---------------------------------------------------------------------------

    def read_back(self, epoch: int, step: int) -> None:
        """Check the alive copies' losses since the last read-back; a non-finite one ends its copy."""
        bad = self.meter.read_back([c.diverged is None for c in self.copies])
        for c, found in zip(self.copies, bad):
            if found is not None:
                c.diverged = f"loss became {found[1]} at epoch {epoch + 1}, step {step + 1}"
                self.opts.log(f"{c.label}: {c.diverged}; it trains no more, the other copies go on")
        if all(c.diverged is not None for c in self.copies):
            raise ArchlangError(f"every copy's loss stopped being finite (the first: {self.copies[0].diverged})",
                                path=str(self.leader.path),
                                hint="lower the learning rate (e.g. --lr) or check the data normalisation")

    def report_diverged(self, status: str) -> None:
        """After a full call: one message for the copies that diverged (their folders say `diverged`)."""
        gone = [c for c in self.copies if c.diverged is not None]
        if gone:
            names = ", ".join(shorten(c.label, 60) for c in gone[:3]) + (" ..." if len(gone) > 3 else "")
            raise ArchlangError(f"{len(gone)} of {len(self.copies)} grouped copies diverged ({names}: "
                                f"{gone[0].diverged}); the others are {status}", path=str(self.leader.path),
                                hint="each run folder's summary.json says how it ended")

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    def stop_flags(self) -> tuple[bool, bool]:
        """(time up, signaled): one process, nothing to agree."""
        time_up = self.opts.time_limit_s is not None and time.monotonic() - self.call_start >= self.opts.time_limit_s
        return time_up, self.signals.received is not None


def _gate_values(model: GroupedModel, copy: int) -> dict[str, float]:
    """Copy i's gate k under the single network's module names (as model_tools.gate_values)."""
    return {name or "gate": float(m.k[copy].detach()) for name, m in model.named_modules() if isinstance(m, GGate)}
