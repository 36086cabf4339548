"""`archlang runs DIR...`: a table of runs (Markdown, CSV or JSON) and a figure of a sweep.

Importing this module does not import torch (nor does the command: run folders are read as files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archlang.errors import ArchlangError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("runs", help="a table of runs or sweeps: values, parameters, epochs, errors, status",
                              description="Tabulate run folders, sweep folders (their sweep.json) or a runs/ "
                              "folder of both; --plot draws a metric against a varying value.")
    p.add_argument("folders", nargs="+", metavar="DIR", help="a run folder, a sweep folder, or a folder of them")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV: one line per run, one column per value")
    out.add_argument("--json", action="store_true", help="a JSON list, one object per run")
    out.add_argument("--markdown", action="store_true", help="a Markdown table (the default)")
    p.add_argument("--plot", metavar="METRIC", help="draw METRIC (final_test_error, best_test_error, mean_k, "
                   "seconds, epochs_done, params) against --x, one line per family; writes PNG and SVG")
    p.add_argument("--x", metavar="VAR", help="the x axis of --plot: a varying value of the sweep (depth, k, ...) "
                   "or params")
    p.add_argument("-o", "--output", metavar="STEM", help="where --plot writes STEM.png and STEM.svg "
                   "(default: METRIC-vs-VAR in the first DIR)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from archlang.compare import table
    from archlang.compare.rows import collect

    if (args.plot is None) != (args.x is None):
        raise ArchlangError("--plot METRIC and --x VAR go together", hint="e.g. --plot final_test_error --x depth")
    rows, varying = collect(args.folders)
    if args.plot is not None:
        from archlang.compare.plot import metric_name, plot

        metric = metric_name(args.plot)
        stem = Path(args.output) if args.output else Path(args.folders[0]) / f"{metric}-vs-{args.x}"
        for path in plot(rows, metric, args.x, varying, stem):
            print(f"wrote {path}", file=sys.stderr)
    if args.plot is not None and not (args.csv or args.json or args.markdown):
        return 0  # the figure was asked for; a table only when a format is named too
    if args.csv:
        sys.stdout.write(table.as_csv(rows, varying))
    elif args.json:
        sys.stdout.write(table.as_json(rows, varying))
    else:
        sys.stdout.write(table.as_markdown(rows, varying))
    return 0
