"""Output paths of the analyses, checked before any work: none may replace an input or another output."""

from __future__ import annotations

from pathlib import Path

from archlang.errors import ArchlangError


def _weights_file(arg: str | None) -> Path | None:
    """The file a --weights argument reads (FILE of torchvision:NAME=FILE)."""
    if not arg:
        return None
    from archlang.transplant import PREFIX

    return Path(arg.partition("=")[2]) if arg.startswith(PREFIX) else Path(arg)


def inputs_of(target: str, weights: str | None) -> list[Path]:
    """Files an analysis reads, which no output of it may replace."""
    path = Path(target)
    files = [path / "spec.arch", path / "model.safetensors"] if path.is_dir() else [path] if path.is_file() else []
    return files + [p for p in [_weights_file(weights)] if p is not None]


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def check_outputs(outputs: dict[str, Path], inputs: list[Path]) -> None:
    """Refuse outputs that would overwrite an input, or each other, before any work is done."""
    named = list(outputs.items())
    for i, (what, out) in enumerate(named):
        for source in inputs:
            if _same_file(out, source):
                raise ArchlangError(f"the {what} would overwrite the input {source}", path=str(out),
                                    hint="choose another output path")
        for other, other_out in named[i + 1:]:
            if _same_file(out, other_out):
                raise ArchlangError(f"the {what} and the {other} would be the same file", path=str(out),
                                    hint="give them different paths")
