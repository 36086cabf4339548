"""What makes two networks copies of one architecture: equal IR once the initial values are left out.

Grouped training (archlang.grouped) runs G copies of one architecture as one batched module. Copies
may differ in a field that only sets a parameter's starting value (a highway transform bias, a gate's
initial k): each copy is built and initialised on its own before the copies are stacked. Any other
difference (a width, an activation, a batchnorm's eps, a dropout rate) changes what the batched
layers compute, so it makes another architecture. Torch-free: a sweep's parent process groups its
points with this before any training process starts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from archlang.errors import ArchlangError, Source, shorten
from archlang.ir.base import IRNode

# Fields that only set an initial parameter value, by node kind.
INIT_FIELDS: dict[str, tuple[str, ...]] = {"highway": ("bias_init",), "gated": ("k_init",),
                                           "dirac": ("a_init", "b_init")}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        drop = INIT_FIELDS.get(value.get("kind", ""), ())
        return {k: _strip(v) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def structure(network: IRNode) -> Any:
    """The network's IR as plain data, without its init-only fields."""
    return _strip(network.model_dump(mode="json"))


def structure_key(network: IRNode) -> str:
    """Equal for two networks exactly when grouped training may stack them."""
    return json.dumps(structure(network), sort_keys=True, separators=(",", ":"))


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two structures first differ, as 'items[4].act: relu vs tanh'; None when equal."""
    if isinstance(a, dict) and isinstance(b, dict) and a.get("kind") == b.get("kind"):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if a == b:
        return None
    return f"{path or 'network'}: {shorten(_brief(a), 40)} vs {shorten(_brief(b), 40)}"


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        return f"a {value.get('kind', 'node')} node"
    if isinstance(value, list):
        return f"{len(value)} items"
    return json.dumps(value)


def check_one_architecture(networks: Sequence[IRNode], source: Source | None = None) -> None:
    """Refuse, naming the first differing field, networks that grouped training cannot stack."""
    first = structure(networks[0])
    for i, network in enumerate(networks[1:], 1):
        found = first_difference(first, structure(network))
        if found:
            raise ArchlangError(f"grouped copies must share one architecture: copy {i} differs from copy 0 in "
                                f"{found}", source=source, span=network.span,
                                hint="copies may differ in recipe fields and in initial values ("
                                + ", ".join(f"{k} {'/'.join(v)}" for k, v in INIT_FIELDS.items())
                                + "); train the others as a group of their own")
