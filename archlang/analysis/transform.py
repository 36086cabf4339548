"""Network surgery on the IR, with the trained weights carried across.

Removing a block (pruning, lesioning) and folding Dirac/BN layers both produce a new IR,
so the result is an ordinary archlang network: it prints as a spec, counts its parameters
by formula, and builds like any other. Weights follow by module path.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from archlang import infer
from archlang.build import build
from archlang.ir import core
from archlang.ir.base import IRNode
from archlang.layers.dirac import DiracConv2d


@dataclass(frozen=True)
class Block:
    """A top-level item of the network that keeps its input shape, so it can be taken out."""

    index: int  # position in network.items (0 is input(...))
    kind: str  # 'gated', 'residual' or 'highway'
    module_path: str  # its name in the built nn.Sequential


def removable_blocks(network: core.Seq, kinds: tuple[str, ...] = ("gated", "residual", "highway")) -> list[Block]:
    """Shape-preserving residual, gated and highway blocks at the top level (what Fig. 5 / Fig. 4 remove)."""
    walker_shapes = []
    shape: infer.Shape = tuple(network.items[0].shape)  # type: ignore[union-attr]
    for item in network.items[1:]:
        out = infer.summarize(core.Seq(items=[core.Input(shape=list(shape)), item])).output_shape
        walker_shapes.append((shape, out))
        shape = out
    blocks = []
    for i, (item, (before, after)) in enumerate(zip(network.items[1:], walker_shapes), start=1):
        if item.kind in kinds and before == after:  # type: ignore[attr-defined]
            blocks.append(Block(i, item.kind, str(i - 1)))  # type: ignore[attr-defined]
    return blocks


def without(network: core.Seq, indices: set[int]) -> core.Seq:
    """The network with the given top-level items removed."""
    return core.Seq(items=[item for i, item in enumerate(network.items) if i not in indices])


def transfer(model: nn.Module, network: core.Seq, removed: set[int]) -> nn.Module:
    """Build the smaller network and copy every remaining weight across by its renumbered path."""
    smaller = build(without(network, removed))
    kept = [i - 1 for i in range(1, len(network.items)) if i not in removed]
    renumber = {str(old): str(new) for new, old in enumerate(kept)}
    state = {}
    for key, value in model.state_dict().items():
        head, _, rest = key.partition(".")
        if head in renumber:
            state[f"{renumber[head]}.{rest}" if rest else renumber[head]] = value
    smaller.load_state_dict(state)
    return smaller


# ---- folding (DiracNets sec. 2: "no cost at all at inference") ---------------------------------


def _fold_items(items: list[IRNode]) -> list[IRNode]:
    out: list[IRNode] = []
    for item in items:
        out.append(fold_ir(item))
    for i in range(len(out) - 1):
        if isinstance(out[i], core.Conv) and isinstance(out[i + 1], core.BatchNorm):
            conv = out[i]
            out[i] = conv.model_copy(update={"bias": True})
            out[i + 1] = core.Identity()
    return out


def fold_ir(node: IRNode) -> IRNode:
    """Dirac convs become plain convs; a conv followed by BN becomes one conv with a bias.

    BN is replaced by identity (not dropped) so module paths, and thus weights, line up.
    """
    if isinstance(node, core.Dirac):
        return node.conv.model_copy()
    if isinstance(node, core.Seq):
        return core.Seq(items=_fold_items(list(node.items)))
    if isinstance(node, core.Residual):
        update = {"body": fold_ir(node.body)}
        if isinstance(node.shortcut, IRNode):
            update["shortcut"] = fold_ir(node.shortcut)
        return node.model_copy(update=update)
    if isinstance(node, core.Gated) and isinstance(node.block, IRNode):
        return node.model_copy(update={"block": fold_ir(node.block)})
    return node


def _plain_conv(dirac: DiracConv2d) -> nn.Conv2d:
    o, i, k, _ = dirac.weight.shape
    conv = nn.Conv2d(i, o, k, dirac.stride, dirac.padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(dirac.combined_weight())
    return conv.train(dirac.training)


def _fold_sequential(seq: nn.Sequential) -> None:
    children = list(seq.named_children())
    for name, child in children:
        if isinstance(child, DiracConv2d):
            setattr(seq, name, _plain_conv(child))
        else:
            fold_module(child)
    names = [name for name, _ in seq.named_children()]
    for a, b in itertools.pairwise(names):
        conv, bn = getattr(seq, a), getattr(seq, b)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(seq, a, fuse_conv_bn_eval(conv, bn))
            setattr(seq, b, nn.Identity())


def fold_module(model: nn.Module) -> nn.Module:
    """Fold a trained module in place, mirroring fold_ir (eval-mode BN statistics are used)."""
    if isinstance(model, nn.Sequential):
        _fold_sequential(model)
    else:
        for name, child in model.named_children():
            if isinstance(child, DiracConv2d):
                setattr(model, name, _plain_conv(child))
            else:
                fold_module(child)
    return model


def folded(model: nn.Module, network: core.Seq) -> tuple[core.Seq, nn.Module]:
    """The folded IR and a module built from it, holding the folded weights of `model`."""
    model = model.eval()
    # Fold in float64 and round once, so the folded net differs from the original only by fp32 rounding.
    dtype = next(model.parameters()).dtype
    source_state = {k: v.to(dtype) if v.is_floating_point() else v
                    for k, v in fold_module(_copy(model).double()).state_dict().items()}
    folded_network = fold_ir(network)
    assert isinstance(folded_network, core.Seq)
    plain = build(folded_network).eval()
    plain.load_state_dict(source_state)
    return folded_network, plain


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)

