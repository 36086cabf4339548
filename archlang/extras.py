"""Optional features and the pip extra that installs each: one message when one is missing.

`pip install archlang` stays light; ONNX export, TensorBoard logs and drawing need packages that
pyproject.toml's extras name. A missing one is a user error naming the extra, not a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from archlang.errors import ArchlangError

# top-level module -> the extra (in pyproject.toml) that installs it
EXTRA_OF = {"onnx": "export", "onnxruntime": "export", "onnxscript": "export", "tensorboard": "logs",
            "graphviz": "draw"}


def require(module: str, feature: str) -> ModuleType:
    """Import `module` for `feature` (e.g. "archlang draw"), or say which extra installs what is missing.

    `module` may be one that imports an optional package itself: torch.utils.tensorboard needs tensorboard.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in EXTRA_OF:
            raise  # not an optional package: a broken install, not a missing extra
        raise ArchlangError(f"{feature} needs the '{missing}' package, which is not installed",
                            hint=f"pip install 'archlang[{EXTRA_OF[missing]}]'") from None
