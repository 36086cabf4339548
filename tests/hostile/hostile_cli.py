"""What the hostile weights and outputs tests share: a small conv net, its model, and `refused`."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

import archlang
from archlang.cli import main

SPEC = "seq(input(3, 8, 8), conv(4), bn, relu, global_avgpool, linear(2))"
FULL_HINT = "hint: the disk is full: free some space and run the command again (nothing was overwritten)"


def model(spec: str = SPEC) -> torch.nn.Module:
    torch.manual_seed(0)
    return archlang.compile(spec).eval()


def state_bytes(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys, message: str, folder: Path) -> None:
    """`archlang ARGV` exits 2 with exactly `message`, and nothing under `folder` changed."""
    before = digests(folder)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert (code, err) == (2, message)
    assert "Traceback" not in err
    assert digests(folder) == before
