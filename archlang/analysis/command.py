"""CLI for the analyses: prune, lesion, gates, fold, sdi, export. Torch is imported only when one runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from archlang.errors import ArchlangError
from archlang.train.recipes import DATASETS

# sdi builds the network once per sample: a bound keeps a typo from running for hours.
MAX_SAMPLES = 1000


def _print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[Text(f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row])
    Console(highlight=False).print(table)


def _emit(args: argparse.Namespace, title: str, columns: list[str], rows: list[list[Any]], data: Any) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_table(title, columns, rows)


def _out_dir(args: argparse.Namespace, run) -> Path:
    from archlang.runs import RunFolder

    folder = Path(args.out) if args.out else (run.folder / RunFolder.ANALYSIS if run.folder else Path("."))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ArchlangError(f"cannot create the output folder: {err.strerror}", path=str(folder)) from None
    return folder


def _steps(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ArchlangError(f"--steps takes comma-separated counts, got '{text}'", hint="e.g. --steps 0,1,2,4,8") from None


def _check_subset(args: argparse.Namespace) -> None:
    if args.subset is not None and args.subset < 1:
        raise ArchlangError(f"--subset must be a positive number of images, got {args.subset}",
                            hint="e.g. --subset 1000 for the first 1000 images; leave it out for all")


def run_prune(args: argparse.Namespace) -> int:
    from archlang.analysis.plots import plot_prune
    from archlang.analysis.prune import check_seeds, prune
    from archlang.analysis.run import data_loader, load_run

    _check_subset(args)
    check_seeds(args.seeds)
    run = load_run(args.run, args.weights)
    loader = data_loader(run, "test", args.data_dir, args.subset, dataset=args.dataset, recipe=args.recipe)
    curve = prune(run, loader, args.strategy, _steps(args.steps), args.seeds)
    rows = [[n, acc, sd, p] for n, acc, sd, p in zip(curve.removed, curve.accuracy, curve.spread, curve.params)]
    _emit(args, f"layer pruning ({args.strategy})", ["removed layers", "test accuracy %", "std", "params"], rows,
          {"strategy": curve.strategy, "removed": curve.removed, "accuracy": curve.accuracy, "std": curve.spread,
           "params": curve.params, "order": curve.order, "seeds": curve.seeds, "orders": curve.orders})
    out = _out_dir(args, run) / f"prune-{args.strategy}.png"
    plot_prune([curve], out, f"{run.compiled.canonical[:60]}")
    print(f"plot: {out}") if not args.json else None
    return 0


def run_lesion(args: argparse.Namespace) -> int:
    from archlang.analysis.plots import plot_lesion
    from archlang.analysis.prune import lesion
    from archlang.analysis.run import data_loader, load_run

    _check_subset(args)
    run = load_run(args.run, args.weights)
    loader = data_loader(run, "train", args.data_dir, args.subset, dataset=args.dataset, recipe=args.recipe)
    baseline, lesions = lesion(run, loader)
    _emit(args, f"lesioning (training set error, unlesioned {baseline:.2f}%)", ["layer", "module", "error %"],
          [[x.layer, x.module_path, x.error] for x in lesions],
          {"baseline_error": baseline, "lesions": [x.__dict__ for x in lesions]})
    out = _out_dir(args, run) / "lesion.png"
    plot_lesion(baseline, lesions, out, run.compiled.canonical[:60])
    print(f"plot: {out}") if not args.json else None
    return 0


def run_gates(args: argparse.Namespace) -> int:
    from archlang.analysis.gates import gate_rows, highway_activity
    from archlang.analysis.plots import plot_gates
    from archlang.analysis.run import data_loader, load_run

    _check_subset(args)
    run = load_run(args.run, args.weights)
    rows = gate_rows(run.model)
    if not rows:
        raise ArchlangError("the network has no gates, Dirac layers or highway layers",
                            hint="gates applies to gated(...), dirac(...) and highway(...) networks")
    highway = any(r.kind == "highway" for r in rows)
    if args.maps and (args.no_data or not highway):
        raise ArchlangError("--maps needs highway layers and their data" + (" (drop --no-data)" if highway else ""),
                            hint="the maps are Highway Figs. 2-3: transform gates per layer and block")
    activity: dict[str, float] = {}
    maps: list[Path] = []
    if highway and not args.no_data:
        loader = data_loader(run, "test", args.data_dir, args.subset or 2000, dataset=args.dataset,
                             recipe=args.recipe)
        activity = highway_activity(run.model, loader.batches(0))
        maps = _gate_maps(run, loader, _out_dir(args, run)) if args.maps else []
    table = [[r.kind, r.layer, r.path, *[f"{k}={v:.4g}" for k, v in r.values.items()],
              *([f"mean T={activity[r.path]:.4g}"] if r.path in activity else [])] for r in rows]
    width = max(len(t) for t in table)
    table = [t + [""] * (width - len(t)) for t in table]
    gates_k = [r.values["k"] for r in rows if r.kind == "gate"]
    title = "gates" + (f" (mean k = {sum(gates_k) / len(gates_k):.4g})" if gates_k else "")
    _emit(args, title, ["kind", "layer", "module", *["value"] * (width - 3)], table,
          {"rows": [{**r.__dict__, **({"mean_T": activity[r.path]} if r.path in activity else {})} for r in rows],
           "mean_k": sum(gates_k) / len(gates_k) if gates_k else None})
    out = _out_dir(args, run) / "gates.png"
    if plot_gates(rows, activity, out, run.compiled.canonical[:60]) and not args.json:
        print(f"plot: {out}")
    if args.maps and not args.json:
        print("\n".join(f"plot: {p}" for p in maps))
    return 0


def _gate_maps(run, loader, folder: Path) -> list[Path]:
    """Highway Figs. 2-3 per layer and block over the loader's images (sample: the first image)."""
    from archlang.analysis.gates import gate_biases, highway_maps
    from archlang.analysis.plots import plot_highway_maps

    maps = highway_maps(run.model, loader.batches(0), run.compiled.num_classes)
    paths = (folder / "gate-maps.png", folder / "gate-classes.png")
    plot_highway_maps(maps, gate_biases(run.model), paths, run.compiled.canonical[:60])
    return list(paths)


def _fold_paths(out: Path) -> tuple[Path, Path]:
    from archlang.weights import WEIGHT_SUFFIXES

    if out.suffix not in WEIGHT_SUFFIXES:
        raise ArchlangError(f"--out names the folded weights: it must end in {', '.join(WEIGHT_SUFFIXES)}",
                            path=str(out), hint="e.g. --out folded.safetensors (the spec goes beside it as "
                            "folded.arch)")
    return out, out.with_suffix(".arch")


def run_fold(args: argparse.Namespace) -> int:
    import torch

    from archlang.analysis.outputs import check_outputs, inputs_of
    from archlang.analysis.run import load_run
    from archlang.analysis.transform import folded
    from archlang.compiler import compile_spec
    from archlang.fileio import atomic_path
    from archlang.ir.text import to_spec
    from archlang.weights import weights_bytes

    out, spec_path = _fold_paths(Path(args.out))
    check_outputs({"folded weights": out, "folded spec": spec_path}, inputs_of(args.run, args.weights))
    run = load_run(args.run, args.weights)
    network, plain = folded(run.model, run.compiled.network)
    torch.manual_seed(0)
    x = torch.randn(8, *run.compiled.input_shape)
    with torch.no_grad():
        diff = float((run.model(x) - plain(x)).abs().max())
    spec_text = to_spec(network)
    compiled = compile_spec(spec_text)  # the folded network is an ordinary spec again
    data = weights_bytes(plain, out, {"spec": spec_text})
    # Both files or neither: each is renamed into place only once both are fully written.
    with atomic_path(out, "the folded weights") as weights_tmp:
        weights_tmp.write_bytes(data)
        with atomic_path(spec_path, "the folded spec") as spec_tmp:
            spec_tmp.write_text(f"# folded from: {run.compiled.canonical}\n{spec_text}\n")
    result = {"weights": str(out), "spec": str(spec_path), "params_before": run.compiled.total_params,
              "params_after": compiled.total_params, "max_abs_diff": diff}
    _emit(args, "folded network", ["", "value"], [[k, v] for k, v in result.items()], result)
    return 0


def run_sdi(args: argparse.Namespace) -> int:
    from archlang.analysis.sdi import he_init, sdi
    from archlang.compiler import compile_spec
    from archlang.parser import read_source

    if not 1 <= args.samples <= MAX_SAMPLES:
        raise ArchlangError(f"--samples must be from 1 to {MAX_SAMPLES}, got {args.samples}",
                            hint="the number of initialisations to average, e.g. --samples 10")
    compiled = compile_spec(read_source(args.spec))
    init = he_init if args.init == "he" else _recipe_init(compiled, args.recipe)
    rows = sdi(compiled, args.samples, args.c, init)
    if not rows:
        raise ArchlangError("no layer of this network can degenerate into an identity map",
                            hint="SDI applies to square plain layers, residual, highway and gated blocks")
    _emit(args, f"TSDI at initialisation ({args.init} init, {args.samples} samples, c = {args.c:g})",
          ["layer", "kind", "n", "measured", "std", "paper", "formula"],
          [[r.path, r.kind, r.n, r.measured, r.spread, r.paper, r.formula] for r in rows],
          [r.__dict__ for r in rows])
    return 0


def _recipe_init(compiled, recipe: str | None):
    """The initialisation `archlang train` applies for this spec (its recipe's init)."""
    from archlang.train.model_tools import apply_init
    from archlang.train.recipes import build_recipe

    resolved = build_recipe(recipe, family=compiled.family, family_args=compiled.family_args,
                            input_shape=tuple(compiled.input_shape), train_args=compiled.train_args,
                            train_spans=compiled.train_spans, spec_source=compiled.source, overrides=None,
                            network=compiled.spec)
    return lambda model: apply_init(model, resolved.recipe)


def run_export(args: argparse.Namespace) -> int:
    from archlang.analysis.export import onnx_bytes, torchscript_bytes
    from archlang.analysis.outputs import check_outputs, inputs_of
    from archlang.analysis.run import load_run
    from archlang.fileio import atomic_write_bytes

    if not args.onnx and not args.torchscript:
        raise ArchlangError("nothing to export", hint="give --onnx model.onnx and/or --torchscript model.ts")
    outputs = {what: Path(p) for what, p in (("ONNX model", args.onnx), ("TorchScript model", args.torchscript)) if p}
    check_outputs(outputs, inputs_of(args.target, args.weights))
    run = load_run(args.target, args.weights)
    shape = run.compiled.input_shape
    # Serialise everything first, so a failing exporter leaves no file behind.
    data = {what: onnx_bytes(run.model, shape) if what == "ONNX model" else torchscript_bytes(run.model, shape)
            for what in outputs}
    for what, path in outputs.items():
        atomic_write_bytes(path, data[what], f"the {what}")
        print(f"wrote {path}")
    return 0


def _common(p: argparse.ArgumentParser, target: str = "run") -> None:
    p.add_argument(target, metavar=target.upper(), help="a run folder, or a spec with --weights")
    p.add_argument("--weights", help="weights (.safetensors or .pt) to use instead of the run's; "
                   "torchvision:NAME=FILE for a torchvision state dict (e.g. torchvision:resnet50=resnet50.pth), "
                   "paired with the spec layer by layer")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="the dataset's folder (default: the one the run used)")
    p.add_argument("--subset", type=int, help="use only the first N images")
    p.add_argument("--dataset", choices=DATASETS, help="the dataset (default: the run's; needed for a spec with --weights)")
    p.add_argument("--recipe", help="recipe whose data and normalisation to use (default: the run's)")
    p.add_argument("--out", help="folder for the plot (default: RUN/analysis)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="remove residual blocks one at a time (Gated ResNet Fig. 5)")
    _common(p)
    _data(p)
    p.add_argument("--strategy", choices=("random", "greedy"), default="greedy",
                   help="greedy: smallest g(k) first (gated nets); random: several seeds")
    p.add_argument("--steps", help="numbers of removed blocks to evaluate, e.g. 0,1,2,4,8 (default: all)")
    p.add_argument("--seeds", type=int, default=5, help="random orders to average (random strategy)")
    p.set_defaults(handler=run_prune)

    p = sub.add_parser("lesion", help="close each highway layer's transform gate (Highway Fig. 4)")
    _common(p)
    _data(p)
    p.set_defaults(handler=run_lesion)

    p = sub.add_parser("gates", help="gate k per block, Dirac a and b, highway gate bias and activity")
    _common(p)
    _data(p)
    p.add_argument("--no-data", action="store_true", help="skip the highway activity (needs the dataset)")
    p.add_argument("--maps", action="store_true", help="also draw highway gates per layer and block (Highway "
                   "Figs. 2-3: gate-maps.png, gate-classes.png) over the images of the mean activity; a conv "
                   "layer's block is a channel, averaged over its positions")
    p.set_defaults(handler=run_gates)

    p = sub.add_parser("fold", help="fold Dirac parameterisation and batchnorm into plain convolutions")
    _common(p)
    p.add_argument("--out", required=True, help="folded weights (.safetensors); the folded spec goes beside it")
    p.set_defaults(handler=run_fold)

    p = sub.add_parser("sdi", help="Squared Distance to Identity of each layer at initialisation")
    p.add_argument("spec", help="a .arch file or the spec text")
    p.add_argument("--init", choices=("module", "he"), default="module",
                   help="module: the initialisation archlang train uses; he: the paper's assumption")
    p.add_argument("--recipe", help="recipe whose initialisation to use (default: the family's)")
    p.add_argument("--samples", type=int, default=10, help="initialisations to average")
    p.add_argument("-c", "--c", type=float, default=-4.0, help="highway degeneration target of the gate bias")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_sdi)

    p = sub.add_parser("export", help="export to ONNX and/or TorchScript")
    _common(p, "target")
    p.add_argument("--onnx", help="path of the .onnx file")
    p.add_argument("--torchscript", help="path of the TorchScript file")
    p.set_defaults(handler=run_export)
