"""Training: paper recipes, real data, resumable runs (`archlang train`).

The Python API is `train(compiled, ...) -> Path`; importing this package imports torch,
unlike `archlang.train.command` and `archlang.train.recipes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TrainOptions", "train"]

if TYPE_CHECKING:
    from archlang.train.loop import TrainOptions, train


def __getattr__(name: str) -> Any:
    # Lazy, so that `import archlang.train.command` (the CLI registration) stays torch-free.
    if name in __all__:
        from archlang.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
