"""--compile's failures as one message each, and the compiled form of a single run's network."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

from archlang import regional
from archlang.errors import ArchlangError


def compile_errors_reported(fit: Any) -> str:
    """torch.compile fails at the first call (no C compiler, an unsupported op): one message, not a traceback."""
    from torch._dynamo.exc import TorchDynamoException

    try:
        return fit()
    except TorchDynamoException as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()][:2]  # "backend raised:", the cause
        first = " ".join(lines or [type(exc).__name__])[:200]
        raise ArchlangError(f"--compile: torch.compile failed ({first})", hint="train without --compile") from None


@contextlib.contextmanager
def compile_available() -> Iterator[None]:
    """torch.compile refused when called (no dynamo on this Python, say): one message, not a traceback."""
    try:
        yield
    except (RuntimeError, ImportError) as exc:
        raise ArchlangError(f"--compile: torch.compile is not available here ({str(exc).splitlines()[0][:120]})",
                            hint="train without --compile") from None


def compiled_module(module: nn.Sequential) -> nn.Module:
    """The built network with its chunks of identical blocks compiled (archlang.regional: seconds to
    compile a 100-layer net, not minutes)."""
    with compile_available():
        return regional.Regional(module)
