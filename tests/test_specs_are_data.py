"""Specs and recipes are data (issue 5): nothing in them is evaluated as Python, imported or opened.

Canaries make any breach visible: a module that records its own import, files whose opening the
interpreter's audit hook records, and payloads that would import the canary if anything evaluated them.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import archlang
from archlang.cli import main
from archlang.errors import ArchlangError, shorten

CANARY = "archlang_canary_module"


class _Audit:
    """Records the audit events raised while `active` (a hook cannot be removed, so it is switched)."""

    def __init__(self) -> None:
        self.active = False
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        sys.addaudithook(self)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event in ("open", "compile", "exec", "import", "os.system", "subprocess.Popen",
                                     "os.exec", "os.posix_spawn", "os.spawn", "socket.connect"):
            self.events.append((event, args))


_AUDIT = _Audit()


@pytest.fixture
def canaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / f"{CANARY}.py").write_text("import builtins\nbuiltins.ARCHLANG_CANARY_IMPORTED = True\n")
    (tmp_path / "canary.arch").write_text("wrn(16, 1)\n")
    (tmp_path / "canary.txt").write_text("secret\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(CANARY, None)
    yield tmp_path
    sys.modules.pop(CANARY, None)
    import builtins

    assert not hasattr(builtins, "ARCHLANG_CANARY_IMPORTED")


def _hostile_specs(d: Path) -> list[str]:
    canary_file, canary_spec = d / "canary.txt", d / "canary.arch"
    return [
        f'__import__("{CANARY}")',
        f"import {CANARY}",
        f'{CANARY}.run("x")',
        f'wrn(28, 10, block=__import__("{CANARY}"))',
        f'let m = __import__("{CANARY}")\nwrn(28, 10, block=m)',
        f'eval("__import__(\'{CANARY}\')")',
        f'exec("import {CANARY}")',
        f'compile("import {CANARY}", "x", "exec")',
        f'open("{canary_file}")',
        f'wrn(28, 10, classes=open("{canary_file}"))',
        f'wrn(28, 10, block="{canary_spec}")',
        f'wrn(28, 10, input="{canary_file}")',
        f'seq(input(3, 32, 32), conv("{canary_file}"))',
        f'let path = "{canary_spec}"\nwrn(28, 10, block=path)',
        f'"{canary_spec}"',
        f'mlp(depth=10, block="{canary_spec}")',
        f'wrn(28, 10)\ntrain(epochs=open("{canary_file}"))',
        f'wrn(28, 10, block=gated(B(3,3)), dropout=0.3)\ntrain(recipe="{canary_file}", data="{d}")',
        '${HOME}',
        '`cat /etc/passwd`',
        '{{7*7}}',
    ]


def _code_from_a_spec(event: str, args: tuple[Any, ...], needle: str) -> bool:
    """Whether an audit event compiles, runs or opens something a spec wrote (modules loading is fine)."""
    if event == "open":
        return needle in str(args[0])
    if event == "compile":
        source = args[0]
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else str(source)
        return CANARY in text or needle in text
    if event == "exec":
        code = args[0]
        return not str(getattr(code, "co_filename", "")).endswith(".py")
    if event == "import":
        return args[0] == CANARY
    return True  # processes and sockets: never


def test_nothing_in_a_spec_is_evaluated_imported_or_opened(canaries: Path) -> None:
    # Warm up, so modules the commands load on first use do not show up as events.
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        main(["compile", "wrn(16, 1)"])
        main(["compile", "wrn(16"])
    specs = _hostile_specs(canaries)
    api: list[str] = []
    codes: list[int] = []
    _AUDIT.events.clear()
    _AUDIT.active = True
    try:
        for text in specs:
            try:
                archlang.compile_spec(text)
                api.append("compiled")
            except ArchlangError as err:
                api.append(err.render())
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err_out:
                codes.append(main(["compile", text]))
            assert "Traceback" not in err_out.getvalue()
    finally:
        _AUDIT.active = False
    breaches = [(e, a) for e, a in _AUDIT.events if _code_from_a_spec(e, a, str(canaries))]
    assert breaches == []
    assert CANARY not in sys.modules
    # Every spec is refused with a message, except the one whose train(...) clause names paths: those
    # strings are data for the trainer, and `compile` accepts the clause without opening anything.
    accepted = [text for text, outcome in zip(specs, api) if outcome == "compiled"]
    assert accepted == [specs[17]]
    assert codes == [0 if text in accepted else 2 for text in specs]


def test_recipes_are_parsed_without_python_tags(canaries: Path) -> None:
    from archlang.train.recipes import load_recipe_layer

    recipe = canaries / "evil.yaml"
    recipe.write_text(f"epochs: !!python/object/apply:{CANARY}.run []\n")
    with pytest.raises(ArchlangError) as info:
        load_recipe_layer(str(recipe))
    assert info.value.render().startswith(f"{recipe}:1:9: error: recipe is not valid YAML")
    assert CANARY not in sys.modules


def test_a_spec_given_as_a_path_is_the_only_file_read(canaries: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = canaries / "net.arch"
    spec.write_text(f'let b = "{canaries / "canary.arch"}"\nwrn(28, 10, block=b)\n')
    _AUDIT.events.clear()
    _AUDIT.active = True
    try:
        assert main(["compile", str(spec)]) == 2
    finally:
        _AUDIT.active = False
    opened = [str(a[0]) for e, a in _AUDIT.events if e == "open" and str(canaries) in str(a[0])]
    assert opened == [str(spec)]
    first = capsys.readouterr().err.split("\n")[0]
    assert first == f"{spec}:2:13: error: {shorten(str(canaries / 'canary.arch'))!r} is not a valid block for wrn()"
