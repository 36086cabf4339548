"""One process of a torchrun launch for tests/test_train_ddp.py (not a test module itself).

usage: torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py SHARED_DATA OUT_DIR

Inside one process group it runs, through the Python API: a run stopped after 3 steps and
resumed; a run whose rank 1 alone produces a NaN loss; and a batch size the processes
cannot split. What each process saw goes to OUT_DIR/rank<r>.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

import archlang
from archlang.errors import ArchlangError
from archlang.train import TrainOptions, ddp, train

SPEC = "mlp(depth=2, width=16, bn=false)"
FAST = {"epochs": 1, "batch_size": 32}


def _train(data: Path, out: Path, name: str, compiled: Any = None, overrides: dict[str, Any] | None = None,
           resume: Path | None = None, **options: Any) -> Path:
    opts = TrainOptions(progress=False, threads=1, **options)
    return train(compiled or archlang.compile_spec(SPEC), overrides=overrides or FAST, out=out, name=name,
                 resume=resume, data_dir=data, subset=256, options=opts)


def _outcome(action: Any) -> dict[str, Any]:
    """What an ArchlangError looked like on this process (or that there was none)."""
    try:
        action()
    except ArchlangError as exc:
        return {"type": type(exc).__name__, "message": exc.message}
    return {"type": None, "message": None}


def _poisoned_on(rank: int, after: int) -> Any:
    """The spec, compiled so that on `rank` only the training forwards from the `after`-th on give NaN."""
    compiled = archlang.compile_spec(SPEC)
    build = compiled.build
    calls = {"n": 0}

    def nan_hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if module.training:
            calls["n"] += 1
            if calls["n"] >= after:
                return output * float("nan")
        return None

    def build_poisoned() -> nn.Module:
        model = build()
        if ddp.context_from_env().rank == rank:
            model.register_forward_hook(nan_hook)  # no new parameters: DDP sees the same model everywhere
        return model

    compiled.build = build_poisoned
    return compiled


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    with ddp.session("cpu") as ctx:  # one process group for all three runs; train() reuses it
        seen: dict[str, Any] = {"rank": ctx.rank, "world_size": ctx.world_size}
        folder = _train(data, out, "pieces", max_steps=3)
        seen["stopped"] = json.loads((folder / "summary.json").read_text())["status"] if ctx.is_main else None
        _train(data, out, "pieces", resume=folder)
        # 8 steps per epoch: rank 1 turns NaN at its 6th forward; every process must stop there.
        seen["nan"] = _outcome(lambda: _train(data, out, "nan", compiled=_poisoned_on(1, 6), checkpoint_every_s=0.0))
        seen["odd_batch"] = _outcome(lambda: _train(data, out, "odd", overrides={**FAST, "batch_size": 33}))
    (out / f"rank{seen['rank']}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main()
