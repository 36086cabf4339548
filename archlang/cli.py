"""`archlang` command line: compile, params, list, draw, schema, train and the analyses, each a subcommand.

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
from typing import Any, NamedTuple

from archlang.errors import ArchlangError, shorten

# Subcommand modules beyond compile/params; each has register(subparsers). Missing ones are skipped
# so a partial install still runs the language commands.
_COMMAND_MODULES = ("archlang.train.command", "archlang.analysis.command", "archlang.compare.command")
# Above this many rows the layer table shows only the top level unless --depth is given.
MAX_DEFAULT_ROWS = 400
SPEC_HELP = "a .arch file, a shipped spec's name (archlang list), or the spec text itself"


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
    if args.batch is not None and not 1 <= args.batch <= 1_000_000:
        raise ArchlangError(f"--batch must be between 1 and 1,000,000, got {args.batch}")
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
        console.print(layer_table(compiled, max_depth=depth, width=console.width))
        console.print(totals_text(compiled, args.batch), markup=False)
    if args.save:
        _save(compiled, Path(args.save))
    return 0


def _save(compiled, path: Path) -> None:
    import torch

    from archlang.weights import save_weights

    model = compiled.build()
    save_weights(model, path, {"spec": compiled.canonical, "torch": torch.__version__})
    print(f"saved {compiled.total_params:,} parameters to {path}", file=sys.stderr)


class _Row(NamedTuple):
    """What `params` keeps of each network of a sweep."""

    canonical: str
    point: tuple[tuple[str, str], ...]
    label: str


def _params_label(compiled, name: str | None) -> str:
    """A row of `params`: the file's (or shipped spec's) name, with a sweep's values; else the spec text."""
    if name is None:
        return compiled.canonical
    return f"{name} [{compiled.point_text}]" if compiled.point else name


def cmd_params(args: argparse.Namespace) -> int:
    from archlang.catalog import label
    from archlang.compiler import iter_compiled
    from archlang.infer import round_like_papers

    source = _read(args.spec)
    name = label(source)
    # One network at a time: a sweep keeps only its rows, never every network's summary (issue 10).
    counts = [(_Row(c.canonical, c.point, _params_label(c, name)),
               c.summary.weights if args.convention == "weights" else c.summary.params) for c in iter_compiled(source)]
    if args.json:
        rows = [{"spec": c.canonical, "params": n, **({"point": dict(c.point)} if c.point else {})}
                for c, n in counts]
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"parameters ({args.convention})" if args.convention != "all" else None)
    table.add_column("spec", overflow="fold")
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("paper style", justify="right", no_wrap=True)
    for c, n in counts:
        table.add_row(Text(c.label), f"{n:,}", round_like_papers(n))
    _console().print(table)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from archlang.catalog import list_specs

    rows = list_specs(args.pattern)
    if not rows:
        raise ArchlangError(f"no shipped spec matches '{shorten(args.pattern)}'",
                            hint="patterns are shell wildcards over the names: 'wrn-28-*', '*gated*'")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold underline")
    table.add_column("name", no_wrap=True)  # names are typed: never broken across lines
    table.add_column("paper", no_wrap=True)
    table.add_column("table", overflow="fold")
    table.add_column("params", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(str(row["name"]), str(row["paper"]), str(row["table"]), f"{row['params']:,}")
    _console().print(table)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from archlang.schema import recipe_markdown, schema

    if args.markdown:
        if args.which != "recipe":
            raise ArchlangError("--markdown is the reference of the recipe fields", hint="archlang schema recipe --markdown")
        print(recipe_markdown(), end="")
        return 0
    print(json.dumps(schema(args.which), indent=2))
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    from archlang.compiler import compile_spec
    from archlang.draw import draw

    written, note = draw(compile_spec(_read(args.spec)), Path(args.output), max_depth=args.depth)
    print(f"wrote {written}" + (f"; {note}" if note else ""), file=sys.stderr)
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab  # a dependency: small, pure Python

    print(shtab.complete(build_parser(_registrations()), shell=args.shell))
    return 0


def _file_argument(p: argparse.ArgumentParser, *names: str, **kwargs: Any) -> None:
    """An argument that shell completion (shtab) completes with file names."""
    from shtab import FILE

    p.add_argument(*names, **kwargs).complete = FILE  # type: ignore[attr-defined]


def _add_language_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="validate a spec and print every layer, its shape and its parameters")
    _file_argument(p, "spec", help=SPEC_HELP + ", or IR JSON (the output of compile --json)")
    p.add_argument("--json", action="store_true", help="print the validated IR, totals and every layer as JSON")
    p.add_argument("--depth", type=int, default=None, help="show layers nested at most this deep")
    p.add_argument("--batch", type=int, metavar="N", help="also estimate the memory at N examples a batch "
                   "(forward/backward pass, params), as torchinfo does")
    p.add_argument("--save", metavar="FILE", help="build the module and save its initial weights "
                   "(.safetensors, or .pt loadable with weights_only=True)")
    p.set_defaults(handler=cmd_compile)

    p = sub.add_parser("params", help="parameter counts of a spec or a sweep, without building anything")
    _file_argument(p, "spec", help=SPEC_HELP + "; {a, b} sets make a sweep")
    p.add_argument("--json", action="store_true", help='print [{"spec": ..., "params": ...}, ...]')
    p.add_argument("--convention", choices=("all", "weights"), default="all",
                   help="weights: only conv and linear weights, as the Highway paper and FitNets counted")
    p.set_defaults(handler=cmd_params)

    p = sub.add_parser("list", help="the shipped paper networks: name, paper, table, parameters")
    p.add_argument("pattern", nargs="?", help="only names matching this shell wildcard, e.g. 'wrn-28-*'")
    p.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("draw", help="a picture of the network: blocks, repeats collapsed, shapes and parameters")
    _file_argument(p, "spec", help=SPEC_HELP)
    _file_argument(p, "-o", "--output", required=True, metavar="FILE",
                   help="net.svg, net.png or net.pdf (rendered with graphviz's dot), or net.dot")
    p.add_argument("--depth", type=int, default=None, help="draw the insides of blocks only this many levels "
                   "deep (0: each top-level block is one box)")
    p.set_defaults(handler=cmd_draw)

    p = sub.add_parser("schema", help="the JSON Schema of the IR or of the recipe, for editors")
    p.add_argument("which", nargs="?", choices=("ir", "recipe"), default="ir", help="ir (default) or recipe")
    p.add_argument("--markdown", action="store_true", help="the recipe fields as a Markdown table "
                   "(docs/recipe-fields.md)")
    p.set_defaults(handler=cmd_schema)

    p = sub.add_parser("completion", help="print a shell completion script: archlang completion bash > ...")
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    p.set_defaults(handler=cmd_completion)


def build_parser(extra: Sequence[Callable[[argparse._SubParsersAction], None]] = ()) -> argparse.ArgumentParser:
    from archlang import __version__

    parser = argparse.ArgumentParser(prog="archlang", description="Declarative architectures from the papers.")
    parser.add_argument("--version", action="version", version=f"archlang {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_language_commands(sub)
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
