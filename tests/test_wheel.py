"""The wheel built from the tracked files carries the grammar, the recipes and every spec, and
`archlang list` works from it alone (importlib.resources, no repository on the path)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    clone = tmp_path_factory.mktemp("clone")
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(clone),
                    "-w", str(out)], check=True, capture_output=True)
    return next(out.glob("archlang-*.whl"))


def test_wheel_holds_the_package_data(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    specs = {str(p.relative_to(ROOT)) for p in ROOT.glob("archlang/specs/*/*.arch")}
    recipes = {str(p.relative_to(ROOT)) for p in ROOT.glob("archlang/recipes/*.yaml")}
    assert specs and recipes and specs | recipes <= names
    assert {"archlang/grammars/archlang.lark", "archlang/specs/catalog.yaml", "archlang/py.typed"} <= names


def test_list_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (f"import sys; sys.path.insert(0, {str(site)!r}); import archlang; "
            f"assert archlang.__file__.startswith({str(site)!r}), archlang.__file__; "
            "from archlang.cli import main; sys.exit(main(['list', '--json']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == len(list(ROOT.glob("archlang/specs/*/*.arch")))
    assert {"name": "wrn-28-10", "params": 36_479_194}.items() <= next(r for r in rows if r["name"] == "wrn-28-10").items()
