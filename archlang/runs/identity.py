"""A run's identity: what was trained (canonical spec), how (resolved recipe) and on what (data).

Computed once, when a run is planned; stored in run.json and inside every checkpoint, and compared
when a run is resumed. Options (device, threads, bf16, time limits) are how a run is executed and
do not enter it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    spec_text: str
    canonical: str
    recipe_given: str
    recipe_resolved: dict[str, Any]
    recipe_hash: str  # ResolvedRecipe.digest(): the one recipe hash
    subset: int | None = None  # the data identity beyond the recipe's dataset

    @property
    def spec_hash(self) -> str:
        return _sha256(self.canonical)

    @property
    def run_hash(self) -> str:
        # A full-data run keeps the formula of runs written before the data entered it, so their
        # default names and their checkpoints stay valid.
        data = "" if self.subset is None else f":subset={self.subset}"
        return _sha256(f"{self.spec_hash}:{self.recipe_hash}{data}")

    @classmethod
    def of(cls, spec_text: str, canonical: str, resolved: Any, subset: int | None) -> RunIdentity:
        """From a compiled spec's texts and a train.recipes.ResolvedRecipe."""
        return cls(spec_text, canonical, resolved.given_text, resolved.resolved_dict(), resolved.digest(), subset)

