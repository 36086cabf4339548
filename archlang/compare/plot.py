"""`archlang runs --plot METRIC --x VAR`: a metric against a varying value, one line per family.

As the papers draw them (WRN Fig. 1, Highway Fig. 1): test error against depth, width or parameters,
one line for each family, and within a family one for each setting of the other varying values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from archlang.compare.rows import Row
from archlang.errors import ArchlangError, did_you_mean, shorten
from archlang.fileio import atomic_path

METRICS = {"final_test_error": "final test error (%)", "best_test_error": "best test error (%)",
           "mean_k": "mean gate k", "seconds": "wall time (s)", "epochs_done": "epochs done", "params": "parameters"}
ALIASES = {"test_error": "final_test_error", "error": "final_test_error", "best": "best_test_error", "k": "mean_k",
           "time": "seconds"}


def metric_name(text: str) -> str:
    name = ALIASES.get(text, text)
    if name not in METRICS:
        raise ArchlangError(f"--plot takes one of {', '.join(METRICS)}; got '{shorten(text)}'",
                            hint=did_you_mean(text, [*METRICS, *ALIASES]))
    return name


def _x_of(x: str, varying: list[str]) -> Callable[[Row], str | int | None]:
    if x == "params":
        return lambda r: r.params
    if x not in varying:
        choices = ["params", *varying]
        raise ArchlangError(f"--x '{shorten(x)}' is not a varying value of these runs",
                            hint=did_you_mean(x, choices) or f"choose one of: {', '.join(choices)}")
    return lambda r: r.values.get(x)


def _number(value: str | int | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _lines(rows: list[Row], metric: str, x: str, varying: list[str]) -> dict[str, list[tuple[str | int, float]]]:
    """label -> (x, y) points; a row without the metric (not trained yet) is left out."""
    x_of = _x_of(x, varying)
    lines: dict[str, list[tuple[str | int, float]]] = {}
    for r in rows:
        y, at = getattr(r, metric), x_of(r)
        if y is None or at is None:
            continue
        # Against parameters a family is one line (WRN Fig. 1); against a value, one per setting of the others.
        others = "" if x == "params" else ",".join(f"{v}={r.values[v]}" for v in varying if v != x and v in r.values)
        label = " ".join(p for p in (r.family or "net", others) if p)
        lines.setdefault(label, []).append((at, float(y)))
    if not lines:
        raise ArchlangError(f"no run has a {metric} yet", hint="train the runs first (or plot another metric)")
    return lines


def plot(rows: list[Row], metric: str, x: str, varying: list[str], stem: Path) -> list[Path]:
    """Write stem.png and stem.svg; returns their paths."""
    from archlang.plotting import pyplot

    lines = _lines(rows, metric, x, varying)
    numeric = all(_number(at) is not None for pts in lines.values() for at, _ in pts)
    categories = list(dict.fromkeys(str(at) for pts in lines.values() for at, _ in pts))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, points in lines.items():
        if numeric:
            points = sorted(points, key=lambda p: _number(p[0]) or 0.0)
            xs: list[float] = [_number(at) or 0.0 for at, _ in points]
        else:
            xs = [float(categories.index(str(at))) for at, _ in points]
        ax.plot(xs, [y for _, y in points], marker="o", label=label)
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    elif x == "params":
        ax.set_xscale("log")
    elif len(ticks := sorted({_number(at) or 0.0 for pts in lines.values() for at, _ in pts})) <= 12:
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])  # the values swept, as the papers label them
    ax.set_xlabel("parameters" if x == "params" else x)
    ax.set_ylabel(METRICS[metric])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    written = []
    for suffix in (".png", ".svg"):
        path = stem.with_suffix(suffix)
        with atomic_path(path, what="plot") as tmp:
            fig.savefig(tmp, dpi=120, format=suffix[1:])
        written.append(path)
    plt.close(fig)
    return written
