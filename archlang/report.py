"""What `archlang compile` prints: the layer table, the totals, and the IR as JSON."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from archlang.compiler import Compiled
from archlang.infer import round_like_papers, shape_text


def _macs_text(macs: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if macs >= size:
            return f"{macs / size:.2f} {unit}MACs"
    return f"{macs} MACs"


def layer_table(compiled: Compiled, max_depth: int | None = None) -> Table:
    table = Table(title=Text(compiled.canonical), title_justify="left")
    table.add_column("layer", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("output", justify="right", no_wrap=True)
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_row("input", "", shape_text(compiled.summary.input_shape), "", "")
    for layer in compiled.summary.layers:
        if max_depth is not None and layer.depth > max_depth:
            continue
        label = Text("  " * layer.depth + layer.label, style=None if layer.leaf else "bold")
        table.add_row(layer.path, label, shape_text(layer.out_shape), f"{layer.params:,}" if layer.params else "",
                      f"{layer.macs:,}" if layer.macs else "")
    return table


def totals_text(compiled: Compiled) -> str:
    s = compiled.summary
    return (f"total parameters: {s.params:,} ({round_like_papers(s.params)})\n"
            f"conv and linear weights only: {s.weights:,} ({round_like_papers(s.weights)})\n"
            f"multiply-accumulates per image: {s.macs:,} ({_macs_text(s.macs)})\n"
            f"input {shape_text(s.input_shape)} -> output {shape_text(s.output_shape)}")


def ir_json(compiled: Compiled) -> dict[str, Any]:
    return {
        "spec": compiled.canonical,
        "ir": compiled.spec.model_dump(mode="json"),
        "network": compiled.network.model_dump(mode="json"),
        "params": compiled.summary.params,
        "weights": compiled.summary.weights,
        "macs": compiled.summary.macs,
        "input_shape": list(compiled.summary.input_shape),
        "output_shape": list(compiled.summary.output_shape),
    }
