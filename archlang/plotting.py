"""matplotlib for the figures every stage writes (training curves, analyses, comparisons): one home.

Imported only when a figure is drawn: matplotlib is an optional, slow import.
"""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: files only, never a display (runs on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
