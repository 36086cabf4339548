"""Network surgery on the IR, with the trained weights carried across.

Removing a block (pruning, lesioning) and folding Dirac/BN layers both produce a new IR,
so the result is an ordinary archlang network: it prints as a spec, counts its parameters
by formula, and builds like any other. Blocks are found at any depth (archlang.analysis.sites),
and weights follow by module path.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from archlang.analysis.sites import children, replace, sites, top_level
from archlang.build import build
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.layers.dirac import DiracConv2d


@dataclass(frozen=True)
class Block:
    """A shape-preserving block somewhere in the network, so it can be taken out."""

    module_path: str  # its name in the built module (model.get_submodule(module_path))
    kind: str  # 'gated', 'residual' or 'highway'


def removable_blocks(network: core.Seq, kinds: tuple[str, ...] = ("gated", "residual", "highway")) -> list[Block]:
    """Shape-preserving residual, gated and highway blocks at any depth, in network order (what Fig. 5 /
    Fig. 4 remove). A block inside a removable block is not offered: it goes with its container."""
    blocks: list[Block] = []
    for site in sites(network):
        inside = any(site.path.startswith(b.module_path + ".") for b in blocks)
        if site.kind in kinds and site.keeps_shape and not inside:
            blocks.append(Block(site.path, site.kind))
    return blocks


def without(network: core.Seq, paths: set[str]) -> core.Seq:
    """The network with the blocks at `paths` replaced by identities (nothing else moves)."""
    return replace(network, {path: core.Identity() for path in paths})


def transfer(model: nn.Module, network: core.Seq, removed: set[str]) -> nn.Module:
    """Build the smaller network and copy every remaining weight across (the paths are unchanged)."""
    smaller = build(without(network, removed))
    wanted = smaller.state_dict().keys()
    smaller.load_state_dict({k: v for k, v in model.state_dict().items() if k in wanted})
    return smaller


# ---- folding (DiracNets sec. 2: "no cost at all at inference") ---------------------------------


def _plain_conv(dirac: DiracConv2d) -> nn.Conv2d:
    o, i, k, _ = dirac.weight.shape
    conv = nn.Conv2d(i, o, k, dirac.stride, dirac.padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(dirac.combined_weight())
    return conv.train(dirac.training).to(dirac.weight.dtype)


def _fuse_chain(names: list[str], nodes: list[IRNode], module: nn.Module) -> list[IRNode]:
    """conv followed by BN -> one conv with a bias. BN becomes identity (not dropped), so module
    paths, and thus weights, line up."""
    nodes = list(nodes)
    for i in range(len(nodes) - 1):
        if isinstance(nodes[i], core.Conv) and isinstance(nodes[i + 1], core.BatchNorm):
            conv, bn = module.get_submodule(names[i]), module.get_submodule(names[i + 1])
            setattr(module, names[i], fuse_conv_bn_eval(conv, bn))
            setattr(module, names[i + 1], nn.Identity())
            nodes[i] = nodes[i].model_copy(update={"bias": True})
            nodes[i + 1] = core.Identity()
    return nodes


def _fold_children(named: list[tuple[str, IRNode]], module: nn.Module) -> dict[str, IRNode]:
    out: dict[str, IRNode] = {}
    for name, child in named:
        out[name], folded_child = fold(child, module.get_submodule(name))
        setattr(module, name, folded_child)
    return out


def fold(node: IRNode, module: nn.Module) -> tuple[IRNode, nn.Module]:
    """Fold a node and its (eval-mode) module together, in place: Dirac convs become plain convs
    and a conv followed by BN one conv with a bias, wherever they sit. One walk over both, so the
    folded IR and the folded weights cannot disagree."""
    if isinstance(node, core.Dirac):
        return node.conv.model_copy(), _plain_conv(module)  # type: ignore[arg-type]
    named = children(node)
    if not named:
        return node, module
    out = _fold_children(named, module)
    if isinstance(node, core.Seq):
        return core.Seq(items=_fuse_chain(list(out), list(out.values()), module)), module
    if isinstance(node, core.Repeat):  # every copy folds to the same IR; each keeps its own weights
        return node.model_copy(update={"block": out["0"]}), module
    if isinstance(node, core.Concat | core.Add):
        return node.model_copy(update={"branches": list(out.values())}), module
    if isinstance(node, core.Gated) and isinstance(node.block, core.Residual):
        return node.model_copy(update={"block": node.block.model_copy(update=out)}), module
    if isinstance(node, core.Gated):
        return node.model_copy(update={"block": out["layer"]}), module
    return node.model_copy(update=out), module  # residual


def folded(model: nn.Module, network: core.Seq) -> tuple[core.Seq, nn.Module]:
    """The folded IR and a module built from it, holding the folded weights of `model`."""
    dtype = next(model.parameters()).dtype
    # Fold in float64 and round once, so the folded net differs from the original only by fp32 rounding.
    work = copy.deepcopy(model).eval().double()
    named = top_level(network)
    out = _fold_children(named, work)
    items = _fuse_chain([name for name, _ in named], list(out.values()), work)
    folded_network = core.Seq(items=[network.items[0], *items])
    plain = build(folded_network).eval()
    # Strict: the spec printed from the folded IR is the one these weights belong to.
    plain.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in work.state_dict().items()})
    return folded_network, plain
