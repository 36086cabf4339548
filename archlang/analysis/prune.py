"""Removing blocks from a trained network: layer pruning (Gated ResNet Fig. 5) and lesioning (Highway Fig. 4).

Both build the network without the block from the IR (so the parameter count drops too)
and copy the remaining trained weights across; nothing is masked.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

import torch

from archlang.analysis.run import LoadedRun, error_percent
from archlang.analysis.transform import Block, removable_blocks, transfer
from archlang.errors import ArchlangError
from archlang.layers.gate import ResidualGate

# Each seed evaluates the network once per step: a bound keeps a typo from running for days.
MAX_SEEDS = 1000


@dataclass
class PruneCurve:
    strategy: str
    removed: list[int] = field(default_factory=list)  # number of blocks removed at each point
    accuracy: list[float] = field(default_factory=list)  # mean test accuracy (%)
    spread: list[float] = field(default_factory=list)  # std over seeds (random), 0 for greedy
    params: list[int] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # greedy: module paths in removal order
    seeds: list[int] = field(default_factory=list)  # random: the seed of each order
    orders: list[list[str]] = field(default_factory=list)  # random: module paths in removal order, per seed


def _gate_value(run: LoadedRun, block: Block) -> float:
    module = run.model.get_submodule(block.module_path)
    gate = next((m for m in module.modules() if isinstance(m, ResidualGate)), None)
    if gate is None:
        raise ArchlangError("greedy pruning needs gated blocks (it removes the smallest g(k) first)",
                            hint="use --strategy random for an ungated network")
    return float(torch.relu(gate.k.detach()))


def _accuracy_without(run: LoadedRun, removed: set[str], loader) -> tuple[float, int]:
    model = transfer(run.model, run.compiled.network, removed).eval()
    return 100.0 - error_percent(model, loader), sum(p.numel() for p in model.parameters())


def _steps(blocks: list[Block], steps: list[int] | None) -> list[int]:
    chosen = steps if steps else list(range(len(blocks) + 1))
    bad = [s for s in chosen if s < 0 or s > len(blocks)]
    if bad:
        raise ArchlangError(f"cannot remove {bad[0]} blocks: the network has {len(blocks)} removable blocks")
    return sorted(set(chosen))


def check_seeds(seeds: int) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise ArchlangError(f"--seeds must be from 1 to {MAX_SEEDS}, got {seeds}",
                            hint="the number of random removal orders to average, e.g. --seeds 5")


def prune(run: LoadedRun, loader, strategy: str, steps: list[int] | None = None, seeds: int = 5) -> PruneCurve:
    blocks = [b for b in removable_blocks(run.compiled.network) if b.kind in ("gated", "residual")]
    if not blocks:
        raise ArchlangError("the network has no residual block that can be removed (identity shortcut)")
    counts = _steps(blocks, steps)
    curve = PruneCurve(strategy)
    if strategy == "greedy":
        order = sorted(blocks, key=lambda b: _gate_value(run, b))
        curve.order = [b.module_path for b in order]
        for n in counts:
            acc, params = _accuracy_without(run, {b.module_path for b in order[:n]}, loader)
            curve.removed.append(n), curve.accuracy.append(acc), curve.spread.append(0.0), curve.params.append(params)
        return curve
    check_seeds(seeds)
    orders = random_orders(blocks, list(range(seeds)))
    curve.seeds, curve.orders = list(range(seeds)), [[b.module_path for b in order] for order in orders]
    for n in counts:
        accs, params = [], 0
        for order in orders:
            acc, params = _accuracy_without(run, {b.module_path for b in order[:n]}, loader)
            accs.append(acc)
        curve.removed.append(n)
        curve.accuracy.append(statistics.fmean(accs))
        curve.spread.append(statistics.pstdev(accs))
        curve.params.append(params)
    return curve


def random_orders(blocks: list[Block], seeds: list[int]) -> list[list[Block]]:
    """One removal order per seed, stratified on the first block: seed i removes first the i-th block
    of a seeded permutation, so up to len(blocks) seeds never remove the same first block (shuffled
    independently, Python's Random with seeds 1, 2 and 3 all put block 1 of 3 first: std 0)."""
    firsts = list(range(len(blocks)))
    random.Random(seeds[0] if seeds else 0).shuffle(firsts)
    orders = []
    for i, seed in enumerate(seeds):
        first = firsts[i % len(blocks)]
        rest = [b for j, b in enumerate(blocks) if j != first]
        random.Random(seed).shuffle(rest)
        orders.append([blocks[first], *rest])
    return orders


@dataclass
class Lesion:
    layer: int  # 1-based highway layer number, as in Highway Fig. 4
    module_path: str
    error: float  # training-set error (%) with this layer's transform gate closed


def lesion(run: LoadedRun, loader) -> tuple[float, list[Lesion]]:
    """Close each highway layer's transform gate (T = 0: the layer copies its input) in turn."""
    blocks = [b for b in removable_blocks(run.compiled.network, ("highway",))]
    if not blocks:
        raise ArchlangError("the network has no highway layers to lesion")
    baseline = error_percent(run.model, loader)
    results = []
    for number, block in enumerate(blocks, start=1):
        # With T = 0 a highway layer is exactly the identity, i.e. the network without it.
        model = transfer(run.model, run.compiled.network, {block.module_path}).eval()
        results.append(Lesion(number, block.module_path, error_percent(model, loader)))
    return baseline, results
