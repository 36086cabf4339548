"""`archlang train`: the subcommand's flags and its handler.

Importing this module must not import torch (the CLI registers every subcommand, and
`archlang params` stays torch-free); torch is imported inside `run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from archlang.errors import ArchlangError
from archlang.launch.command import add_sweep_flags, sweep_or_none

SEVERAL_GPUS = """\
several GPUs (torch.distributed, DistributedDataParallel):
  torchrun --standalone --nproc_per_node 4 -m archlang train SPEC --device cuda ...
  (or python -m torch.distributed.run ...; --resume works the same way)
  Each process drives GPU LOCAL_RANK and trains on its 1/N shard of every batch: the
  recipe's batch_size stays the global batch and must be divisible by N. Weights start
  from rank 0's and gradients are averaged over the GPUs in backward; batch norm
  statistics stay per GPU, as in the papers' multi-GPU code. Rank 0 alone evaluates,
  writes the run folder and prints; the run folder must be on a file system every
  process sees (one machine, or a shared one). On CPU the processes use gloo.
"""


def _set_pair(text: str) -> tuple[str, Any]:
    from archlang.train.recipe_yaml import parse_flag_value

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    try:
        return key.strip().replace("-", "_"), parse_flag_value(value)
    except ArchlangError as err:  # argparse reports these as its own errors (exit 2)
        raise argparse.ArgumentTypeError(err.message) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    # A usage line listing 40 flags is longer than a screen (and than any error it precedes): --help lists them.
    p = subparsers.add_parser("train", help="train a spec with its paper's recipe; writes runs/<name>/",
                              usage="%(prog)s [SPEC] [--recipe NAME|FILE] [options]  (--help lists them)",
                              description="Train a spec on real data with a paper recipe. Recipe fields come from "
                              "the YAML recipe, then the spec's train(...) clause, then these flags.",
                              epilog=SEVERAL_GPUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", help="a .arch file or the spec text itself (optional with --resume)")
    p.add_argument("--recipe", metavar="NAME|FILE", help="a shipped recipe (wrn-cifar, gated-mnist, ...) or a YAML file; "
                   "default: the family's recipe")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--weight-decay", type=float, help="override the recipe's weight decay")
    p.add_argument("--k-decay", action=argparse.BooleanOptionalAction, default=None,
                   help="apply weight decay to the gates k (Gated ResNet 'k decay'; off by default)")
    p.add_argument("--set", dest="set_fields", action="append", type=_set_pair, default=[], metavar="FIELD=VALUE",
                   help="override any recipe field, e.g. --set milestones=[0.5,0.75]")
    p.add_argument("--subset", type=int, metavar="N", help="train on the first N training images")
    p.add_argument("--data-dir", metavar="DIR", help="a local copy of the dataset (torchvision layout, an ImageFolder "
                   "tree or a zip of one); without it torchvision downloads to ~/.cache/archlang/data")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="let torchvision download missing data (default: only without --data-dir)")
    p.add_argument("--cache-dir", metavar="DIR", help="where decoded ImageFolder data is cached (~/.cache/archlang/decoded)")
    p.add_argument("--out", metavar="DIR", default="runs", help="parent folder of the run folder (default: runs)")
    p.add_argument("--name", help="run folder name (default: <family>-<recipe>-<hash>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest good checkpoint")
    p.add_argument("--seeds", metavar="N|LIST", help="train one copy per seed in ONE process (grouped layers): N "
                   "means seeds 0..N-1, a list like 3,5,8 names them; one run folder per seed (<name>-seed<S> with "
                   "--name). --resume of any of those folders continues the whole group")
    # A grouped sweep's parent starts `train --sweep-group ROOT --points I,J` for each group (archlang.launch.groups).
    p.add_argument("--sweep-group", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--points", metavar="LIST", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--bf16", "--amp", dest="bf16", action="store_true", help="bf16 autocast (default: fp32 as the papers)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for conv nets")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network's blocks, each kind of chunk of identical blocks once "
                        "(docs/training.md)")
    p.add_argument("--tf32", action="store_true", help="TF32 matmuls and convolutions on CUDA (faster; default: "
                   "true fp32, as the papers)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--flush-denormal", action="store_true", help="CPU: denormal floats become 0 (nets without "
                   "batch norm whose activations decay into them run several times faster; changes the arithmetic "
                   "slightly, so a run resumes only with the setting it started with)")
    p.add_argument("--workers", type=int, metavar="N", help="processes that decode ImageNet images "
                   "(default: up to 8, one core left free; 0: in the training process)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="also checkpoint inside an epoch this often (default: 5; 0: after every step)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="checkpoint and stop after this long; continue later with --resume")
    p.add_argument("--max-steps", type=int, help="checkpoint and stop after this many optimizer steps")
    p.add_argument("--log-every", type=int, default=50, metavar="N", help="steps.csv and TensorBoard rows every "
                   "N steps, and a plain progress line when stderr is not a terminal (default: 50; 0: per epoch only)")
    p.add_argument("--eval-subset", type=int, metavar="N", help="evaluate on the first N test images only "
                   "(quick trials; the numbers are not the paper's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when stderr is not a terminal)")
    add_sweep_flags(p)
    p.set_defaults(handler=run)


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields the flags set (--set and the fields with flags of their own)."""
    values: dict[str, Any] = dict(args.set_fields)
    for flag in ("epochs", "seed", "lr", "batch_size", "weight_decay", "k_decay"):
        value = getattr(args, flag)
        if value is not None:
            values[flag] = value
    return values


def _spec_source(args: argparse.Namespace):
    from archlang.errors import Source
    from archlang.parser import read_source
    from archlang.runs import RunFolder

    if args.spec is not None:
        return read_source(args.spec)
    if args.resume is None:
        raise ArchlangError("give a SPEC to train (a .arch file or the spec text), or --resume a run folder")
    text, name = RunFolder.open(args.resume).read_spec()
    return Source(text, name)


def _is_grouped(folder: str) -> bool:
    from archlang.train.grouped_run import group_of

    return group_of(folder) is not None


def _saved_recipe(args: argparse.Namespace) -> str:
    """With --resume and no recipe flags, continue with the run's own resolved recipe file."""
    from archlang.runs import RunFolder

    run = RunFolder.open(args.resume)
    run.read_recipe()  # plain YAML and a mapping, or one message now
    return str(run.recipe_path)


def _said_finished(folder: Path) -> bool:
    """A finished run has nothing left to train: one line says so (and the command exits 0)."""
    from archlang.runs import RunFolder

    summary = RunFolder.open(folder).read_summary()
    if summary is None or summary.status != "finished":
        return False
    error = f", final test error {summary.final_test_error:.2f}%" if summary.final_test_error is not None else ""
    print(f"{folder} is finished ({summary.epochs_done} of {summary.epochs} epochs{error}); nothing to train",
          file=sys.stderr)
    return True


def run(args: argparse.Namespace) -> int:
    if args.sweep_group is None:
        swept = sweep_or_none(args)  # a spec with {a, b} sets: every point (or group) in a process of its own
        if swept is not None:
            return swept
    _check_ignored_flags(args)
    if args.resume is not None and _said_finished(Path(args.resume)):
        return 0
    from archlang.train import ddp
    from archlang.train.signals import TrainingInterrupted

    # Under torchrun the process group spans the whole command, so that even a bad spec is
    # reported once (by rank 0) and every process stops, none left waiting for the others.
    with ddp.session(args.device) as ctx:
        try:
            folder = ddp.agreed(ctx, lambda: _prepare(args))()
        except ddp.ReportedByRankZero:
            # Rank 0 prints the error and exits with status 2. A non-zero status here would make
            # torchrun stop rank 0, maybe before it has printed or written summary.json.
            return 0
        except TrainingInterrupted as stop:
            if ctx.is_main:
                print(stop, file=sys.stderr)
            return stop.exit_code
        except ArchlangError as err:
            if ctx.enabled and not ctx.is_main:  # a failure of this process alone: say which one
                err.message = f"process {ctx.rank} of {ctx.world_size}: {err.message}"
            raise
        if ctx.is_main:
            print("\n".join(map(str, folder)) if isinstance(folder, list) else folder)
    return 0


def _check_ignored_flags(args: argparse.Namespace) -> None:
    """Refuse a flag this call would otherwise drop without a word."""
    if getattr(args, "grouped", False) and args.sweep_group is None:
        raise ArchlangError("--grouped trains the points of a sweep (a spec with {a, b} sets) in groups; "
                            "this is one network", hint="drop --grouped, or train copies of it with --seeds N")
    if args.resume is not None and args.seeds is not None:
        raise ArchlangError("--resume continues a run (or its whole group) with the seeds it was started with; "
                            "it does not take --seeds", hint="drop --seeds, or start a new group with --seeds and --name")


def _prepare(args: argparse.Namespace):
    """Compile the spec and set up the options; returns the call that trains (every process makes it)."""
    from archlang.compiler import compile_spec
    from archlang.train.loop import train

    if args.sweep_group is not None:
        return _sweep_group(args)
    source = _spec_source(args)
    compiled = compile_spec(source)
    recipe, overrides = args.recipe, recipe_overrides(args)
    if args.resume is not None and recipe is None:
        # Flags apply on top of the run's own resolved recipe (which already holds the train(...)
        # clause), so flags equal to the recorded ones resume it and only a changed field is refused.
        recipe = _saved_recipe(args)
    options = _options(args)
    if args.seeds is not None or (args.resume is not None and _is_grouped(args.resume)):
        from archlang.train.grouped_run import parse_seeds, train_grouped

        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
        recipe = args.recipe  # each copy resumes with its own saved recipe unless one is given
        return lambda: train_grouped(compiled, seeds, recipe=recipe, overrides=overrides, out=args.out, name=args.name,
                                     resume=args.resume, data_dir=args.data_dir, subset=args.subset, options=options,
                                     spec_text=source.text)
    return lambda: train(compiled, recipe=recipe, overrides=overrides, out=args.out, name=args.name, resume=args.resume,
                         data_dir=args.data_dir, subset=args.subset, options=options, spec_text=source.text)


def _options(args: argparse.Namespace):
    from archlang.train.loop import TrainOptions

    return TrainOptions(
        device=args.device, bf16=args.bf16, tf32=args.tf32, channels_last=args.channels_last, compile=args.compile,
        threads=args.threads, flush_denormal=args.flush_denormal, progress=not args.no_progress, download=args.download,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        checkpoint_every_s=max(0.0, args.checkpoint_minutes * 60.0),
        max_steps=args.max_steps, time_limit_s=args.time_limit * 60.0 if args.time_limit is not None else None,
        workers=args.workers, log_every=args.log_every, eval_subset=args.eval_subset,
    )


def _sweep_group(args: argparse.Namespace):
    """`train --sweep-group ROOT --points I,J`: one group of a grouped sweep (archlang.launch.groups starts it)."""
    from archlang.train.grouped_run import train_sweep_group

    if args.points is None or args.spec is not None or args.resume is not None or args.seeds is not None:
        raise ArchlangError("--sweep-group takes --points I,J,... and no SPEC, --resume or --seeds",
                            hint="it is started by `archlang train SWEEP --grouped`")
    try:
        indices = [int(i) for i in args.points.split(",")]
    except ValueError:
        raise ArchlangError(f"--points takes point indices like 0,3,5, not {args.points[:40]!r}") from None
    options = _options(args)
    return lambda: train_sweep_group(args.sweep_group, indices, recipe=args.recipe, overrides=recipe_overrides(args),
                                     data_dir=args.data_dir, subset=args.subset, options=options)
