"""Docs that are generated or quoted cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import archlang
from archlang.schema import FIELD_NOTES, recipe_markdown
from archlang.train.recipes import Recipe

ROOT = Path(__file__).resolve().parents[1]


def test_every_recipe_field_is_described():
    missing = [name for name, field in Recipe.model_fields.items() if not (field.description or FIELD_NOTES.get(name))]
    stale = sorted(set(FIELD_NOTES) - set(Recipe.model_fields))
    assert (missing, stale) == ([], []), "describe new recipe fields in Field(description=...) or schema.FIELD_NOTES"


def test_recipe_field_reference_is_generated():
    committed = (ROOT / "docs/recipe-fields.md").read_text(encoding="utf-8")
    assert committed == recipe_markdown(), "regenerate: archlang schema recipe --markdown > docs/recipe-fields.md"


def test_readme_commands_name_real_specs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"archlang compile (\S+)", readme)
    assert first is not None and first.group(1) == "wrn-28-10"
    assert archlang.count_params(first.group(1)) == 36_479_194
    for command in ("list", "draw", "schema", "completion", "--version"):
        assert f"archlang {command}" in readme
