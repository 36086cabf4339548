"""The torch.compile backends the compile tests run: aot_eager (dynamo and autograd traced, no C++)
always, inductor (what --compile runs) where a C++ compiler is installed."""

from __future__ import annotations

import shutil

import pytest

NEEDS_CXX = pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="inductor needs a C++ compiler")
BACKENDS = ["aot_eager", pytest.param("inductor", marks=NEEDS_CXX)]
