"""Which recipe fields the copies of one grouped training may set each for itself.

The grouped optimizer (archlang.grouped.optim) steps every copy with its own lr, momentum,
Nesterov flag, dampening, betas, eps and weight decay (and what it applies to), Caffe's lr and
decay multipliers (sgd), each copy's lr follows its own schedule (its momentum reset at its
milestones), and each copy is built and initialised on its own (seed, inits).
Everything else is one value for all copies: they take their steps together on batches of one
size, for one number of epochs, on one dataset prepared one way, through batch norms with one
momentum and eps. A sweep grouped with `--grouped` puts points that differ in such a field into
different groups; a group handed to the trainer with a difference is refused, naming the field.
Torch-free (the sweep's parent process groups with it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from archlang.errors import ArchlangError, shorten
from archlang.train.recipes import RECIPE_FIELDS, Recipe

PER_COPY_FIELDS = ("lr", "momentum", "nesterov", "dampening", "betas", "eps", "schedule", "milestones", "gamma",
                   "weight_decay", "k_decay", "dirac_decay", "bias_decay", "bn_decay", "seed", "conv_init",
                   "linear_init", "bn_weight_init", "gate_init", "classifier_init", "classifier_std", "stem_init",
                   "stem_std")
SHARED_FIELDS = tuple(f for f in RECIPE_FIELDS if f not in PER_COPY_FIELDS)


def shared_key(recipe: Any) -> str:
    """Equal for two recipes exactly when their copies may train in one group."""
    return json.dumps({f: getattr(recipe, f) for f in SHARED_FIELDS}, sort_keys=True, default=str)


def check_shared(recipes: Sequence[Any], names: Sequence[str] | None = None) -> None:
    """Refuse copies whose recipes differ in a field the group shares, naming the field and the copies."""
    first = recipes[0]
    for i, recipe in enumerate(recipes[1:], 1):
        for f in SHARED_FIELDS:
            a, b = getattr(first, f), getattr(recipe, f)
            if a != b:
                who = f"{names[0]} and {names[i]}" if names else f"copy 0 and copy {i}"
                raise ArchlangError(f"the grouped copies' recipes differ in {f} ({who}: {shorten(str(a))} vs "
                                    f"{shorten(str(b))}); grouped copies share it",
                                    hint="copies may differ in " + ", ".join(PER_COPY_FIELDS)
                                    + "; `archlang train SWEEP --grouped` puts the others in groups of their own")


def check_groupable(recipes: Sequence[Recipe], names: Sequence[str]) -> None:
    """Refuse copies a grouped training cannot step together: before any run folder is made or data read."""
    first = recipes[0]
    if first.optimizer not in ("sgd", "nadam"):
        raise ArchlangError(f"grouped training steps sgd or nadam recipes, not {first.optimizer}",
                            hint="train the seeds one by one")
    check_shared(recipes, names)
    # The loaders have no whole-image normalisation: refuse what they would otherwise silently leave out.
    if first.normalize in ("gcn", "gcn_zca", "pixel_mean"):
        raise ArchlangError(f"grouped training does not apply normalize={first.normalize} yet",
                            hint="train the seeds one by one, or --set normalize=meanstd")
    _check_resets(recipes, names)


def _check_resets(recipes: Sequence[Recipe], names: Sequence[str]) -> None:
    """A reset of some copies only zeroes their momentum slices: the same as a fresh buffer only
    without dampening (archlang.grouped.optim.reset_momentum)."""
    if not recipes[0].momentum_reset or len({tuple(r.milestone_epochs()) for r in recipes}) == 1:
        return  # momentum_reset is shared (check_shared): with one set of milestones all copies reset together
    damped = [n for r, n in zip(recipes, names) if r.dampening != 0]
    if damped:
        raise ArchlangError(f"grouped copies that reset momentum at different epochs need dampening=0 "
                            f"({shorten(', '.join(damped))})", hint="train the seeds one by one")
