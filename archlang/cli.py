"""`archlang` command line: compile, params, train and the analyses, each a subcommand.

Every user error is an ArchlangError: printed as file:line:col, the source line, a caret and
a hint, with exit status 2. Commands that do not need torch (params) never import it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from archlang.errors import ArchlangError

# Subcommand modules beyond compile/params; each has register(subparsers). Missing ones are skipped
# so a partial install still runs the language commands.
_COMMAND_MODULES = ("archlang.train.command", "archlang.analysis.command")
# Above this many rows the layer table shows only the top level unless --depth is given.
MAX_DEFAULT_ROWS = 400


def _read(spec: str):
    from archlang.parser import read_source

    return read_source(spec)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def cmd_compile(args: argparse.Namespace) -> int:
    from archlang.compiler import compile_spec
    from archlang.report import ir_json, layer_table, totals_text

    compiled = compile_spec(_read(args.spec))
    if args.save:
        compiled.check_buildable()  # refuse an absurd size before printing or importing torch
    if args.json:
        print(json.dumps(ir_json(compiled), indent=2))
    else:
        console = _console()
        depth = args.depth
        if depth is None and len(compiled.summary.layers) > MAX_DEFAULT_ROWS:
            depth = 0  # thousands of rows help no one; the top level shows every block's totals
            print(f"{len(compiled.summary.layers)} layers: showing the top level (--depth N shows more)",
                  file=sys.stderr)
        console.print(layer_table(compiled, max_depth=depth))
        console.print(totals_text(compiled), markup=False)
    if args.save:
        _save(compiled, Path(args.save))
    return 0


def _save(compiled, path: Path) -> None:
    import torch

    from archlang.weights import save_weights

    model = compiled.build()
    save_weights(model, path, {"spec": compiled.canonical, "torch": torch.__version__})
    print(f"saved {compiled.total_params:,} parameters to {path}", file=sys.stderr)


def cmd_params(args: argparse.Namespace) -> int:
    from archlang.compiler import compile_all
    from archlang.infer import round_like_papers

    networks = compile_all(_read(args.spec))
    counts = [(c.canonical, c.summary.weights if args.convention == "weights" else c.summary.params)
              for c in networks]
    if args.json:
        print(json.dumps([{"spec": spec, "params": n} for spec, n in counts], indent=2))
        return 0
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"parameters ({args.convention})" if args.convention != "all" else None)
    table.add_column("spec")
    table.add_column("params", justify="right")
    table.add_column("paper style", justify="right")
    for spec, n in counts:
        table.add_row(Text(spec), f"{n:,}", round_like_papers(n))
    _console().print(table)
    return 0


def build_parser(extra: Sequence[Callable[[argparse._SubParsersAction], None]] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archlang", description="Declarative architectures from the papers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="validate a spec and print every layer, its shape and its parameters")
    p.add_argument("spec", help="a .arch file or the spec text itself")
    p.add_argument("--json", action="store_true", help="print the validated IR as JSON")
    p.add_argument("--depth", type=int, default=None, help="show layers nested at most this deep")
    p.add_argument("--save", metavar="FILE", help="build the module and save its initial weights "
                   "(.safetensors, or .pt loadable with weights_only=True)")
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("params", help="parameter counts of a spec or a sweep, without building anything")
    p.add_argument("spec", help="a .arch file or the spec text itself; {a, b} sets make a sweep")
    p.add_argument("--json", action="store_true", help='print [{"spec": ..., "params": ...}, ...]')
    p.add_argument("--convention", choices=("all", "weights"), default="all",
                   help="weights: only conv and linear weights, as the Highway paper and FitNets counted")
    p.set_defaults(handler=cmd_params)

    for register in extra:
        register(sub)
    return parser


def _registrations() -> list[Callable[[argparse._SubParsersAction], None]]:
    found = []
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            raise
        found.append(module.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_registrations())
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ArchlangError as err:
        print(err.render(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
