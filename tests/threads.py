"""One torch thread for test modules of small tensors: faster on 2 shared cores and immune to OpenMP
contention. Import `one_thread` into a test module to make it apply there (it is autouse)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
