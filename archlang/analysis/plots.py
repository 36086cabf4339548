"""PNG figures of the analyses, labelled like the papers' figures."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from archlang.fileio import atomic_write_bytes
from archlang.plotting import pyplot as _pyplot


def _finish(plt, fig, ax, xlabel: str, ylabel: str, title: str, path: Path, legend_size: float | None = None) -> None:
    """Label a one-panel figure like the papers' (counted x axis), save it and free it."""
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=legend_size)
    _save(plt, fig, path)


def _save(plt, fig, path: Path, layout: bool = True) -> None:
    """Render in memory and write atomically: a full disk leaves the previous figure, not half a PNG."""
    if layout:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue(), "the plot")


def plot_prune(curves: Sequence, path: Path, title: str) -> None:
    """Gated ResNet Fig. 5 (right): test accuracy against the number of removed layers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for curve in curves:
        ax.errorbar(curve.removed, curve.accuracy, yerr=curve.spread if any(curve.spread) else None,
                    marker="o", ms=3, capsize=2, label=curve.strategy)
    _finish(plt, fig, ax, "number of removed layers", "test accuracy (%)", title, path)


def plot_lesion(baseline: float, lesions: Sequence, path: Path, title: str) -> None:
    """Highway Fig. 4: training-set error with each layer's transform gate closed, unlesioned as a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot([x.layer for x in lesions], [x.error for x in lesions], "o-", ms=3, label="lesioned")
    ax.axhline(baseline, color="k", ls="--", lw=1, label="not lesioned")
    _finish(plt, fig, ax, "lesioned layer", "training set error (%)", title, path)


def plot_lesion_curves(curves: dict[str, tuple[float, Sequence]], path: Path, title: str) -> None:
    """Highway Fig. 4 for several nets in one panel: each net's lesioned training-set error per layer (a log
    axis where they span decades: errors near 0 and at 90% both show), its unlesioned error dotted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (baseline, lesions) in curves.items():
        line, = ax.plot([x.layer for x in lesions], [x.error for x in lesions], "o-", ms=2, lw=1, label=label)
        ax.axhline(baseline, color=line.get_color(), ls=":", lw=1)
    values = [v for baseline, lesions in curves.values() for v in (baseline, *(x.error for x in lesions))]
    if values and max(values) > 10 * max(min(values), 0.01):  # within a decade the log axis would show no tick
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)  # an error is never negative: symlog would otherwise mirror the axis below 0
    _finish(plt, fig, ax, "lesioned layer", "training set error (%)", title, path, legend_size=6)


def plot_gates(rows: Sequence, activity: dict[str, float], path: Path, title: str) -> bool:
    """k per block (Gated ResNet Fig. 5 left/7), Dirac a per layer (DiracNets Fig. 4), highway bias/activity."""
    panels = []
    for kind, key, label in (("gate", "k", "k"), ("dirac", "a", "a"), ("dirac", "b", "b"),
                             ("highway", "bias", "transform gate bias")):
        values = [(r.layer, r.values[key]) for r in rows if r.kind == kind]
        if values:
            panels.append((kind, label, values))
    if activity:
        panels.append(("highway", "mean transform gate T(x)", list(enumerate(activity.values(), start=1))))
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for ax, (kind, label, values) in zip(axes[0], panels):
        ax.bar([v[0] for v in values], [v[1] for v in values])
        ax.set_xlabel("block" if kind == "gate" else "layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
    fig.suptitle(title, fontsize=8)
    _save(plt, fig, path)
    return True


def plot_maps(panels: Sequence[tuple[str, Any]], path: Path, title: str, *, columns: int | None = None,
              centred: bool = False) -> None:
    """Highway Figs. 2 and 3: one heatmap per (title, layers x blocks array), layer down, block across.

    centred: one colour scale for every panel, symmetric about 0, with one colour bar (Fig. 3's
    differences); otherwise each panel has its own colour bar (Fig. 2's biases, gate outputs and
    block outputs differ in range)."""
    import numpy as np

    plt = _pyplot()
    columns = columns or len(panels)
    rows = (len(panels) + columns - 1) // columns
    width, height = 2.7 * columns, 2.5 * rows + 0.9
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False, sharex=True, sharey=True)
    arrays = [np.asarray(a, dtype=float) for _, a in panels]
    limit = max(float(np.nanmax(np.abs(a))) for a in arrays) if centred and arrays else 0.0
    limit = limit or 1.0  # an all-zero map still needs a colour scale
    scale = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit} if centred else {"cmap": "viridis"}
    for ax, (label, _), array in zip(axes.flat, panels, arrays):
        # Rows and columns numbered from 1, the first highway layer at the top, as in the paper.
        extent = (0.5, array.shape[1] + 0.5, array.shape[0] + 0.5, 0.5)
        image = ax.imshow(array, aspect="auto", interpolation="nearest", extent=extent, **scale)
        if not centred:
            _colour_bar(fig, image, ax)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("block")
        ax.set_ylabel("layer")
        ax.label_outer()  # the panels share both axes: numbers and labels on the outer ones only
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    # A fixed layout: tight_layout measured every tick label again (about half the drawing time).
    fig.subplots_adjust(left=0.6 / width, right=1 - (0.9 if centred else 0.5) / width, bottom=0.5 / height,
                        top=1 - 0.75 / height, wspace=0.2 if centred else 0.55, hspace=0.3)
    if centred and panels:
        _colour_bar(fig, image, list(axes.flat))  # after the layout: one bar beside all the panels
    _save(plt, fig, path, layout=False)


def _colour_bar(fig, image, ax) -> None:
    bar = fig.colorbar(image, ax=ax, fraction=0.05 if not isinstance(ax, list) else 0.02, pad=0.03)
    bar.formatter.set_useOffset(False)  # biases near -2 would read "0.0000" with a "-2" offset
    bar.update_ticks()


def plot_highway_maps(maps: Any, bias: Any, paths: tuple[Path, Path], title: str, unit: str = "class") -> None:
    """Highway Fig. 2 (one row: gate biases, mean T, one sample's T and its block outputs) and Fig. 3
    (each class's mean T minus the mean over all), from archlang.analysis.gates.HighwayMaps."""
    sample = f"sample {maps.sample_index}"
    plot_maps([("(a) transform gate bias", bias), ("(b) mean transform gate output", maps.mean_t),
               (f"(c) transform gate outputs, {sample}", maps.sample_t),
               (f"(d) block outputs, {sample} ({unit} {maps.sample_label})", maps.sample_y)], paths[0], title)
    difference = maps.class_difference()
    plot_maps([(f"{unit} {c}: mean T - mean over all", difference[c]) for c in range(len(difference))], paths[1],
              title, columns=5, centred=True)
