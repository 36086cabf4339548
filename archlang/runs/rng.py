"""Every random state a resumed run needs, in one JSON-able format (records.RankRng).

The same record is saved for a single process and gathered from every process of a torchrun
launch, so a checkpoint holds one list, rank by rank.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

import numpy as np
import torch

from archlang.errors import ArchlangError
from archlang.runs.records import NumpyRng, RankRng


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def _tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text, validate=True)), dtype=torch.uint8)


def capture(device: torch.device | None = None) -> RankRng:
    """This process's RNG state. CUDA: the states of `device` alone (a torchrun process), or of every
    initialised GPU (a single process), so no GPU is touched that training did not use."""
    cuda: list[tuple[int, str]] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        if device is not None and device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            cuda = [(index, _b64(torch.cuda.get_rng_state(index)))]
        else:
            cuda = [(i, _b64(s)) for i, s in enumerate(torch.cuda.get_rng_state_all())]
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return RankRng(torch=_b64(torch.get_rng_state()), cuda=cuda,
                   numpy=NumpyRng(kind=kind, keys=base64.b64encode(np.asarray(keys, dtype=np.uint32).tobytes()).decode(),
                                  pos=int(pos), has_gauss=int(has_gauss), cached=float(cached)),
                   python=(version, list(state), gauss))


def restore(saved: RankRng, log: Callable[[str], None]) -> None:
    """Set this process's RNG state; CUDA states of GPUs this machine does not have are skipped, said in `log`."""
    try:
        torch.set_rng_state(_tensor(saved.torch))
        if saved.numpy is not None:
            n = saved.numpy
            keys = np.frombuffer(base64.b64decode(n.keys, validate=True), dtype=np.uint32).copy()
            np.random.set_state((n.kind, keys, n.pos, n.has_gauss, n.cached))
        if saved.python is not None:
            version, state, gauss = saved.python
            random.setstate((version, tuple(state), gauss))
        _restore_cuda(saved.cuda, log)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ArchlangError(f"the checkpoint's random state is damaged ({str(exc)[:120]})") from None


def _restore_cuda(states: list[tuple[int, str]], log: Callable[[str], None]) -> None:
    if not states:
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    usable = [(i, s) for i, s in states if i < count]
    for index, state in usable:
        torch.cuda.set_rng_state(_tensor(state), index)
    if len(usable) < len(states):
        log(f"warning: the checkpoint holds the CUDA random state of {len(states)} GPU(s), this machine has {count}: "
            f"restored {len(usable)}, the others' dropout draws start afresh")
