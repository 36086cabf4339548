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
    """Import `module` for `feature` (e.g. "archlang draw"), or say which extra installs it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != top:
            raise  # a module missing inside the package is a broken install, not a missing extra
        extra = EXTRA_OF[top]
        raise ArchlangError(f"{feature} needs the '{top}' package, which is not installed",
                            hint=f"pip install 'archlang[{extra}]'") from None
