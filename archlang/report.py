"""What `archlang compile` prints: the layer table, the totals, and the IR as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

from archlang.compiler import Compiled
from archlang.infer import Layer, MemoryEstimate, memory_estimate, round_like_papers, shape_text, size_text


def _macs_text(macs: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if macs >= size:
            return f"{macs / size:.2f} {unit}MACs"
    return f"{macs} MACs"


def compact(count: int) -> str:
    """235,929,600 -> '235.9M': four significant digits, for a column that must fit 80 terminal columns."""
    for unit, size in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if count >= size:
            value = count / size
            return f"{value:.{max(0, 4 - len(str(int(value))))}f}{unit}"
    return str(count)


# Columns of the layer table; a heavy-head table adds 3 characters per column (two of padding, one rule) and one.
_COLUMNS = 5


def _table_width(cells: list[tuple[str, ...]]) -> int:
    widths = [max(len(row[i]) for row in cells) for i in range(_COLUMNS)]
    return sum(widths) + 3 * _COLUMNS + 1


def _cells(rows: list[Layer], number: Callable[[int], str]) -> list[tuple[str, ...]]:
    return [(layer.path, "  " * layer.depth + layer.label, shape_text(layer.out_shape),
             number(layer.params) if layer.params else "", number(layer.macs) if layer.macs else "")
            for layer in rows]


def fitted_cells(rows: list[Layer], width: int | None) -> list[tuple[str, ...]]:
    """The table's cells, numbers in full when they fit `width`, else MACs then parameters abbreviated."""
    full = _cells(rows, "{:,}".format)
    if width is None or _table_width(full) <= width:
        return full
    for params in ("{:,}".format, compact):
        cells = [(*row[:3], params(layer.params) if layer.params else "", compact(layer.macs) if layer.macs else "")
                 for row, layer in zip(full, rows)]
        if _table_width(cells) <= width:
            break
    return cells


def layer_table(compiled: Compiled, max_depth: int | None = None, width: int | None = None) -> Table:
    """Every layer (nested at most `max_depth` deep) in a table that fits `width` columns without cutting."""
    rows = [layer for layer in compiled.summary.layers if max_depth is None or layer.depth <= max_depth]
    table = Table(title=Text(compiled.canonical), title_justify="left")
    # fold, never "…": a cell too wide for a narrow terminal wraps rather than losing digits.
    table.add_column("layer", overflow="fold")
    table.add_column("", overflow="fold")
    table.add_column("output", justify="right", overflow="fold")
    table.add_column("params", justify="right", overflow="fold")
    table.add_column("MACs", justify="right", overflow="fold")
    table.add_row("input", "", shape_text(compiled.summary.input_shape), "", "")
    for layer, cells in zip(rows, fitted_cells(rows, width)):
        table.add_row(*cells[:1], Text(cells[1], style=None if layer.leaf else "bold"), *cells[2:])
    return table


def totals_text(compiled: Compiled, batch: int | None = None) -> str:
    s = compiled.summary
    text = (f"total parameters: {s.params:,} ({round_like_papers(s.params)})\n"
            f"conv and linear weights only: {s.weights:,} ({round_like_papers(s.weights)})\n"
            f"multiply-accumulates per image: {s.macs:,} ({_macs_text(s.macs)})\n"
            f"input {shape_text(s.input_shape)} -> output {shape_text(s.output_shape)}")
    return text if batch is None else text + "\n" + memory_text(memory_estimate(s, batch))


def memory_text(m: MemoryEstimate) -> str:
    """The estimate as torchinfo prints it (its model: infer.MemoryEstimate), plus what training adds."""
    return (f"memory at batch {m.batch} (float32): input size {size_text(m.input_bytes)}\n"
            f"forward/backward pass size: {size_text(m.forward_backward_bytes)}\n"
            f"params size: {size_text(m.params_bytes)}\n"
            f"estimated total size: {size_text(m.estimated_total)}\n"
            f"training, with gradients and SGD momentum: {size_text(m.training_bytes)}")


def layer_rows(compiled: Compiled) -> list[dict[str, Any]]:
    """Every row of the layer table, numbers in full: what `compile --json` lists under "layers"."""
    return [{"path": layer.path, "depth": layer.depth, "kind": layer.kind, "label": layer.label,
             "output_shape": list(layer.out_shape), "params": layer.params, "weights": layer.weights,
             "macs": layer.macs, "leaf": layer.leaf} for layer in compiled.summary.layers]


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
        "layers": layer_rows(compiled),
    }
