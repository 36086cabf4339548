"""Deployable models: ONNX (legacy TorchScript-based exporter, onnx only) and TorchScript."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from archlang.errors import ArchlangError


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int = 17) -> None:
    example = torch.randn(2, *input_shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    except OSError as err:
        raise ArchlangError(f"cannot write the ONNX model: {err.strerror}", path=str(path)) from None


def export_torchscript(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    example = torch.randn(2, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(model.eval(), example)
    try:
        scripted.save(str(path))
    except (OSError, RuntimeError) as err:
        raise ArchlangError(f"cannot write the TorchScript model ({err})", path=str(path)) from None
