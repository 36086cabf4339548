"""Shared fixtures. `shared_data`: the real datasets in ../shared/data (see its README.md).

$ARCHLANG_TEST_DATA overrides the folder (a git worktree's ../shared may not be that folder).
Tests that need a dataset skip cleanly where the folder or that dataset is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ARCHLANG_TEST_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} absent (set ARCHLANG_TEST_DATA to the shared data folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_mnist(shared_data: Path) -> Path:
    if not (shared_data / "MNIST" / "raw").is_dir():
        pytest.skip(f"{shared_data}/MNIST absent")
    return shared_data


@pytest.fixture(scope="session")
def shared_cifar_zip(shared_data: Path) -> Path:
    path = shared_data / "cifar10-jpeg.zip"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    return path


def write_mnist(root: Path, train: int = 64, test: int = 32, seed: int = 0) -> Path:
    """A tiny MNIST in torchvision's raw layout (random pixels, every class), for fast tests."""
    import numpy as np

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(np.array([2051, n, 28, 28], ">i4").tobytes() + images.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(np.array([2049, n], ">i4").tobytes() + labels.tobytes())
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A folder holding a 64 + 32 image MNIST in torchvision's layout."""
    return write_mnist(tmp_path / "data")
