"""archlang: a declarative language and compiler for the deep networks of five papers.

    >>> import archlang
    >>> model = archlang.compile("wrn(depth=28, k=10, block=gated(B(3,3)), dropout=0.3)")
    >>> archlang.count_params("wrn-28-10")            # a shipped spec, by name (archlang.list_specs())
    36479194

A spec is the text itself, a path to a .arch file, a shipped spec's name, or IR JSON.
Importing archlang does not import torch; only building a module does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from archlang.catalog import list_specs
from archlang.compiler import Compiled, compile_all, compile_spec
from archlang.errors import ArchlangError, Source

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ArchlangError", "Compiled", "compile", "compile_all", "compile_spec", "count_params", "list_specs",
           "load_run", "load_torchvision", "sweep_params"]
__version__ = "0.1.0"

Spec = str | os.PathLike[str] | Source


def compile(spec: Spec, filename: str = "<inline>") -> nn.Module:
    """Build the torch module of a one-network spec."""
    return compile_spec(spec, filename).build()


def count_params(spec: Spec, convention: str = "all") -> int:
    """Parameter count of a one-network spec, from the IR: 'all' or 'weights' (conv/linear weights only)."""
    summary = compile_spec(spec).summary
    return summary.weights if convention == "weights" else summary.params


def sweep_params(spec: Spec, convention: str = "all") -> list[tuple[str, int]]:
    """(canonical spec, count) for each network of a spec that may be a sweep."""
    from archlang.compiler import iter_compiled

    # Streamed: a sweep's networks are compiled one at a time, only the rows are kept.
    return [(c.canonical, c.summary.weights if convention == "weights" else c.summary.params)
            for c in iter_compiled(spec)]


def load_torchvision(model: nn.Module, source: nn.Module | str, state: Any = None) -> nn.Module:
    """Copy a torchvision model's weights into a structurally identical archlang module, pairing layers
    by structure (see archlang.transplant): `source` is the torchvision module, or its name with
    `state` its state dict or state-dict file. Nothing is downloaded."""
    from archlang.transplant import load_torchvision as load

    return load(model, source, state)


def load_run(folder: str | os.PathLike[str], weights: str | None = None) -> Any:
    """A trained run folder (its spec, recipe and final weights, built into a model), read and validated
    through archlang.runs; or a spec with `weights`."""
    from archlang.runs import load_run as load

    return load(os.fspath(folder), weights)
