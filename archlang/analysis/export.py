"""Deployable models: ONNX (legacy TorchScript-based exporter, onnx only) and TorchScript.

Both are serialised in memory and written atomically (archlang/fileio.py): TorchScript's own
file writer aborts the process (SIGABRT) on a full disk and leaves part of a file, and the ONNX
exporter leaves an empty one when it fails, so neither is given the path.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from archlang.errors import ArchlangError
from archlang.fileio import atomic_write_bytes


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401 (torch's exporter needs it)
    except ImportError:
        raise ArchlangError("ONNX export needs the onnx package, which is not installed",
                            hint="pip install 'archlang[export]'") from None


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], opset: int = 17) -> bytes:
    _require_onnx()
    example = torch.randn(2, *input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buffer.getvalue()


def torchscript_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    example = torch.randn(2, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(model.eval(), example)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int = 17) -> None:
    atomic_write_bytes(path, onnx_bytes(model, input_shape, opset), "the ONNX model")


def export_torchscript(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    atomic_write_bytes(path, torchscript_bytes(model, input_shape), "the TorchScript model")
