"""Each copy's optimizer settings, and the order they give the grouped optimizer's flat buffer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Setting = tuple[float, float]  # one parameter's (lr multiplier, weight decay), Caffe's lr_mult and decay


@dataclass(frozen=True)
class CopyHyper:
    """One copy's optimizer settings; field names follow archlang's recipes (see from_recipe)."""

    optimizer: Literal["sgd", "nadam"]
    lr: float
    momentum: float = 0.0  # SGD momentum
    dampening: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)  # NAdam
    eps: float = 1e-8
    momentum_decay: float = 0.004  # NAdam's; Keras' schedule_decay, as archlang's trainer uses
    weight_decay: float = 0.0
    # Parameter name -> its own (lr multiplier, weight decay); a name not here takes (1, weight_decay).
    settings: Mapping[str, Setting] = field(default_factory=dict, hash=False)

    @classmethod
    def from_recipe(cls, recipe: Any, settings: Mapping[str, Setting] | None = None) -> CopyHyper:
        """Read the fields of an archlang recipe (any object with these attributes)."""
        return cls(optimizer=recipe.optimizer, lr=recipe.lr, momentum=recipe.momentum, dampening=recipe.dampening,
                   nesterov=recipe.nesterov, betas=tuple(recipe.betas), eps=recipe.eps,
                   weight_decay=recipe.weight_decay, settings=dict(settings or {}))

    def setting(self, name: str) -> Setting:
        """Parameter `name`'s (lr multiplier, weight decay) for this copy."""
        return self.settings.get(name, (1.0, self.weight_decay))


def by_setting(settings: Sequence[Sequence[Setting]]) -> list[int]:
    """Parameter indices (settings[g][j]: copy g, parameter j) grouped by the settings all copies give
    them, in the order those first appear and module order within one, so that each is one slice of
    the flat buffer."""
    columns = list(zip(*settings))
    rank: dict[tuple[Setting, ...], int] = {}
    for column in columns:
        rank.setdefault(column, len(rank))
    return sorted(range(len(columns)), key=lambda j: rank[columns[j]])
