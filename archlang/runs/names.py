"""The run-folder name of one seed's member of a group: NAME-seedS, and back.

`archlang train --seeds 0,1 --name NAME` writes NAME-seed0 and NAME-seed1, and scripts find a
name's members again by parsing folder names; committed folders (reproduce/runs/gated-mnist/*-seedN)
carry this spelling, so it is public and must not change.
"""

from __future__ import annotations

SEED_MARK = "-seed"


def member_name(name: str, seed: int) -> str:
    """The folder name of `seed`'s run in the group named `name`: 'gated-d10-seed3'."""
    return f"{name}{SEED_MARK}{seed}"


def parse_member_name(folder_name: str) -> tuple[str, int] | None:
    """(name, seed) of a member's folder name; None for any other name ('g-seedling', 'g-seed01', 'g')."""
    name, mark, seed = folder_name.rpartition(SEED_MARK)
    # ASCII digits only (int() would also take '²'), and exactly member_name's spelling (no '01', no '+1').
    if not mark or not name or not (seed.isascii() and seed.isdigit()) or member_name(name, int(seed)) != folder_name:
        return None
    return name, int(seed)
