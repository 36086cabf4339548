"""PNG plots a reader of the papers recognises, drawn from metrics.jsonl.

- curves.png: train loss and test error per epoch (WRN Fig. 2, Gated ResNet Fig. 4/6)
- gates.png:  k of every gated block over epochs (Gated ResNet Fig. 5/7)
- dirac.png:  a of every Dirac layer over epochs (DiracNets Fig. 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from archlang.plotting import pyplot as _pyplot


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_err.plot(epochs, [r["train_error"] for r in history], "--", label="train error")
    ax_err.plot(epochs, [r["test_error"] for r in history], label="test error")
    ax_err.set_xlabel("epoch")
    ax_err.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_err.set_ylabel("error (%)")
    ax_err.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_layer(history: list[dict[str, Any]], key: str, path: Path, ylabel: str, title: str) -> bool:
    """One line per layer (k per gated block, or a per Dirac layer); False when there are none."""
    if not history or not history[-1].get(key):
        return False
    plt = _pyplot()
    names = list(history[-1][key])
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(names):
        values = [r[key].get(name, float("nan")) for r in history]
        ax.plot(epochs, values, color=cmap(i / max(1, len(names) - 1)), label=name if len(names) <= 12 else None)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("" if len(names) <= 12 else f" ({len(names)} layers, dark = first)"))
    if len(names) <= 12:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_plots(folder: Path, history: list[dict[str, Any]], title: str) -> list[Path]:
    if not history:
        return []
    written = [folder / "curves.png"]
    plot_curves(history, written[0], title)
    if plot_per_layer(history, "gates_k", folder / "gates.png", "k (gate = relu(k))", "gate k per block"):
        written.append(folder / "gates.png")
    if plot_per_layer(history, "dirac_a", folder / "dirac.png", "a", "Dirac a per layer"):
        written.append(folder / "dirac.png")
    return written
