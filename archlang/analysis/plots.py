"""PNG figures of the analyses, labelled like the papers' figures."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from archlang.fileio import atomic_write_bytes
from archlang.plotting import pyplot as _pyplot


def _finish(plt, fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """Label a one-panel figure like the papers' (counted x axis), save it and free it."""
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    ax.legend()
    _save(plt, fig, path)


def _save(plt, fig, path: Path) -> None:
    """Render in memory and write atomically: a full disk leaves the previous figure, not half a PNG."""
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
