"""A missing optional package is one message naming the pip extra that installs it."""

from __future__ import annotations

import sys

import pytest

from archlang.errors import ArchlangError
from archlang.extras import require


@pytest.mark.parametrize(("module", "missing", "extra"), [
    ("onnx", "onnx", "export"), ("tensorboard", "tensorboard", "logs"), ("graphviz", "graphviz", "draw"),
])
def test_missing_extra_names_it(monkeypatch, module, missing, extra):
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ArchlangError) as err:
        require(module, "this feature")
    assert err.value.render() == (f"error: this feature needs the '{missing}' package, which is not installed\n"
                                  f"hint: pip install 'archlang[{extra}]'")


def test_a_module_that_imports_an_optional_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ArchlangError, match=r"TensorBoard logs needs the 'tensorboard' package"):
        require("torch.utils.tensorboard", "TensorBoard logs")


def test_other_missing_modules_are_not_hidden():
    with pytest.raises(ModuleNotFoundError):
        require("archlang_no_such_module", "nothing")
