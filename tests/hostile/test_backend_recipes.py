"""Hostile recipes and recipe flags: one message each (exit 2), bounded, never a traceback
(issue 10, "Recipes and flags"). The memory cases run the CLI in a child process and assert its
peak RSS; the rest run the CLI in this process (one torch import for all of them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import archlang
from archlang.cli import main
from archlang.errors import ArchlangError
from archlang.train.recipes import build_recipe

REPO = Path(__file__).resolve().parents[2]
SPEC = "mlp(depth=2, width=8)"
MEASURED = """
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": p.returncode, "err": p.stderr, "out_bytes": len(p.stdout),
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""
BASE = "dataset: mnist\noptimizer: sgd\nlr: 0.1\nepochs: 1\n"


def _nested_aliases(levels: int = 9, width: int = 9) -> str:
    """[&a [1,...],&b [*a,...],...]: width**levels values once the aliases are expanded."""
    names = "abcdefghijklmnopqrstuvwxyz"
    parts = [f"&a [{','.join(['1'] * width)}]"]
    parts += [f"&{names[i]} [{','.join([f'*{names[i - 1]}'] * width)}]" for i in range(1, levels)]
    return f"[{','.join(parts)}]"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip()


def _train(capsys: pytest.CaptureFixture[str], tmp: Path, *flags: str, spec: str = SPEC) -> tuple[int, str]:
    return _cli(capsys, "train", spec, "--data-dir", str(tmp / "nowhere"), "--out", str(tmp / "runs"),
                "--no-progress", *flags)


def _measured(tmp: Path, *flags: str) -> dict:
    argv = [sys.executable, "-m", "archlang", "train", SPEC, "--data-dir", str(tmp / "nowhere"),
            "--out", str(tmp / "runs"), *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", MEASURED, *argv], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    result = json.loads(done.stdout)
    assert "Traceback" not in result["err"] and result["rc"] == 2
    print(f"peak RSS {result['rss_mb']:.0f} MB, stderr {len(result['err'])} bytes")
    return result


def _refused(path: Path) -> str:
    """The message a recipe file is refused with."""
    with pytest.raises(ArchlangError) as info:
        build_recipe(str(path))
    return info.value.render()


def _recipe(tmp: Path, text: str | bytes, name: str = "r.yaml") -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---- the cases of the issue --------------------------------------------------------------------


def test_446_byte_yaml_of_nested_aliases_in_momentum(tmp_path: Path) -> None:
    path = _recipe(tmp_path, BASE + f"momentum: {_nested_aliases()}\n")
    assert len(path.read_bytes()) < 450
    result = _measured(tmp_path, "--recipe", str(path))
    assert result["rss_mb"] < 1000 and len(result["err"]) < 1000
    lines = result["err"].splitlines()
    assert lines[0] == f"{path}:5:138: error: the recipe expands to more than 10,000 values (nested aliases?)"


def test_283_char_set_of_nested_aliases_prints_one_line(tmp_path: Path) -> None:
    value = _nested_aliases(levels=9, width=8)
    result = _measured(tmp_path, "--set", f"momentum={value}")
    assert len(f"momentum={value}") < 300 and result["rss_mb"] < 1000 and len(result["err"]) < 1000
    assert result["err"].splitlines()[-1] == (
        "archlang train: error: argument --set: the value expands to more than 10,000 values (nested aliases?)")


def test_a_big_but_bounded_value_is_shown_truncated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, "--set", f"momentum={_nested_aliases(levels=4, width=9)}")  # 6,561 values
    assert rc == 2 and err == ("error: --set momentum: recipe field 'momentum' = [[1, 1, 1, 1, 1, 1, 1, 1, ...], "
                               "[[1, 1, 1, 1, 1, 1, 1, 1, ...], [1, 1, 1, 1, 1, 1, 1, 1, ...], [1, 1, 1, 1, 1, 1, 1, "
                               "1, ...], [1, 1, 1, 1, 1, 1, 1, 1, ...], [1, 1, 1, 1, 1, 1, 1, 1, ...], [1, 1, 1,...: "
                               "Input should be a valid number")


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_multistep_milestones_not_finite(value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, "--set", "schedule=multistep", "--set", f"milestones=[{value}]")
    shown = {".inf": "inf", ".nan": "nan", "-.inf": "-inf"}[value]
    assert rc == 2 and err == f"error: --set milestones: recipe field 'milestones' = [{shown}]: " \
                              "Input should be a finite number"


def test_recipe_nested_5000_deep(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _recipe(tmp_path, BASE + "momentum: " + "[" * 5000 + "]" * 5000 + "\n")
    rc, err = _train(capsys, tmp_path, "--recipe", str(path))
    assert rc == 2 and err.splitlines()[0] == f"{path}:5:42: error: the recipe nests more than 32 levels deep"


def test_set_value_nested_5000_deep(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, "--set", "momentum=" + "[" * 5000 + "]" * 5000)
    assert rc == 2 and err.splitlines()[-1] == (
        "archlang train: error: argument --set: the value nests more than 32 levels deep")


@pytest.mark.parametrize("field,text,shown", [("std", "[.nan]", "[nan]"), ("mean", "[.inf]", "[inf]")])
def test_statistics_not_finite(field: str, text: str, shown: str, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    other = "mean" if field == "std" else "std"
    path = _recipe(tmp_path, BASE + f"normalize: meanstd\n{field}: {text}\n{other}: [0.5]\n")
    rc, err = _train(capsys, tmp_path, "--recipe", str(path))
    assert rc == 2 and err.splitlines()[0] == (
        f"{path}:6:1: error: recipe field '{field}' = {shown}: Input should be a finite number")


# ---- more of our own ---------------------------------------------------------------------------


def test_recipe_that_is_a_list(tmp_path: Path) -> None:
    assert _refused(_recipe(tmp_path, "- lr: 0.1\n- epochs: 2\n")).splitlines()[0] == (
        f"{tmp_path / 'r.yaml'}:1:1: error: a recipe must be a mapping of `field: value` lines")


def test_python_tag_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _recipe(tmp_path, BASE + f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    assert _refused(path).splitlines()[0] == (
        f"{path}:5:7: error: recipe is not valid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'")
    assert not marker.exists()


def test_field_given_twice(tmp_path: Path) -> None:
    path = _recipe(tmp_path, BASE + "lr: 0.5\n")
    assert _refused(path) == (f"{path}:5:1: error: recipe field 'lr' is given twice\n"
                                   "   5 | lr: 0.5\n       ^^\n"
                                   "hint: YAML would silently keep the last one; remove one")


def test_integer_of_5000_digits(tmp_path: Path) -> None:
    path = _recipe(tmp_path, BASE.replace("epochs: 1", "epochs: " + "9" * 5000))
    assert _refused(path).splitlines()[0] == (
        f"{path}:1:1: error: recipe value cannot be read: Exceeds the limit (4300 digits) for integer string "
        "conversion")


def test_integer_too_large_for_the_field(tmp_path: Path) -> None:
    path = _recipe(tmp_path, BASE.replace("epochs: 1", "epochs: " + "9" * 60))
    assert _refused(path).splitlines()[0] == (
        f"{path}:4:1: error: recipe field 'epochs' = 999999999999999999...9999999999999999999: "
        "Input should be less than or equal to 100000")


def test_recipe_file_not_utf8(tmp_path: Path) -> None:
    path = _recipe(tmp_path, b"\xff\xfe" + BASE.encode("utf-16-le"))
    assert _refused(path) == (f"{path}: error: cannot read recipe file: 'utf-8' codec can't decode byte 0xff "
                                   "in position 0: invalid start byte")


def test_recipe_file_of_two_megabytes(tmp_path: Path) -> None:
    path = _recipe(tmp_path, BASE + "#" * (2 << 20) + "\n")
    assert _refused(path) == f"{path}: error: the recipe file is over 1,048,576 bytes; a recipe is a page of fields"


def test_recipe_path_is_a_folder_or_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")
    for name in ("dir.yaml", "fifo.yaml"):
        assert _refused(tmp_path / name).splitlines()[0] == f"{tmp_path / name}: error: recipe file not found"


def test_train_clause_recipe_not_a_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, spec=f"{SPEC}\ntrain(recipe=5)")
    assert rc == 2 and err == ("<inline>:2:7: error: train(recipe=...) names a recipe, got 5\n"
                               "   2 | train(recipe=5)\n             ^^^^^^^^\n"
                               'hint: a shipped name or a YAML file, e.g. train(recipe="wrn-cifar")')


def test_train_clause_unknown_recipe(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, spec=f'{SPEC}\ntrain(recipe="gated-mnst")')
    assert rc == 2 and err == ("<inline>:2:7: error: unknown recipe 'gated-mnst'\n"
                               '   2 | train(recipe="gated-mnst")\n             ^^^^^^^^^^^^^^^^^^^\n'
                               "hint: did you mean 'gated-mnist'?")


def test_recipe_bn_momentum_contradicts_the_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = "seq(input(3,32,32), conv(8), bn(momentum=0.5), relu, global_avgpool, linear(10))"
    rc, err = _train(capsys, tmp_path, "--recipe", "gated-cifar-wrn", spec=spec)
    recipe = REPO / "archlang" / "recipes" / "gated-cifar-wrn.yaml"
    assert rc == 2 and err == (
        "<inline>:1:33: error: the recipe's bn_momentum 0.1 contradicts this bn(momentum=0.5)\n"
        f"   1 | {spec}\n" + " " * 39 + "^" * 12 + "\n"
        f"hint: the recipe sets it at {recipe}:35:1: bn_momentum: 0.1            # [GR] \"Batch Normalization's "
        "momentum is set to 0.9\" (Keras terms) =...; remove one of the two or make them agree "
        "(--set bn_momentum=0.5)")
    rc, err = _train(capsys, tmp_path, "--recipe", "gated-cifar-wrn", "--set", "bn_momentum=0.3", spec=spec)
    assert rc == 2 and err.splitlines()[-1] == ("hint: the recipe sets it at --set bn_momentum; remove one of the "
                                                "two or make them agree (--set bn_momentum=0.5)")


def test_set_value_of_the_wrong_type(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, "--set", "gamma=abc")
    assert rc == 2 and err == ("error: --set gamma: recipe field 'gamma' = 'abc': Input should be a valid "
                               "number, unable to parse string as a number")
    rc, err = _train(capsys, tmp_path, "--set", "epochs=abc")  # a field with a flag of its own is named by it
    assert rc == 2 and err == ("error: --epochs: recipe field 'epochs' = 'abc': Input should be a valid "
                               "integer, unable to parse string as an integer")


def test_set_lr_that_overflows_to_inf(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, "--lr", "1e400")
    assert rc == 2 and err == "error: --lr: recipe field 'lr' = inf: Input should be a finite number"


def test_set_unknown_field_with_a_megabyte_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, "--set", "momentun=0.1")
    assert rc == 2 and err == "error: --set momentun: unknown recipe field 'momentun'\nhint: did you mean 'momentum'?"
    rc, err = _train(capsys, tmp_path, "--set", "x" * 1_000_000 + "=1")
    assert rc == 2 and len(err) < 1000 and err.startswith(f"error: --set {'x' * 37}...: unknown recipe field")


def test_multi_document_yaml(tmp_path: Path) -> None:
    path = _recipe(tmp_path, BASE + "---\nlr: 0.2\n")
    assert _refused(path).splitlines()[0] == (
        f"{path}:5:1: error: recipe is not valid YAML: expected a single document in the stream but found another document")


def test_empty_recipe_file(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "# nothing\n")
    assert _refused(path) == f"{path}: error: recipe field 'dataset' is required but no recipe layer sets it"


def test_negative_seed_and_fractional_batch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _train(capsys, tmp_path, "--seed", "-1")
    assert rc == 2 and err == "error: --seed: recipe field 'seed' = -1: Input should be greater than or equal to 0"
    rc, err = _train(capsys, tmp_path, "--set", "eval_batch_size=1.5")
    assert rc == 2 and err == ("error: --set eval_batch_size: recipe field 'eval_batch_size' = 1.5: Input should be "
                               "a valid integer, got a number with a fractional part")


def test_resolved_recipe_of_a_run_with_a_python_tag(tmp_path: Path) -> None:
    """What --resume reads back: a tampered recipe.resolved.yaml is refused like any recipe."""
    path = _recipe(tmp_path, BASE + "lr: !!python/name:os.system\n", name="recipe.resolved.yaml")
    with pytest.raises(ArchlangError, match="could not determine a constructor"):
        build_recipe(str(path))


def test_spec_defaults_pick_their_papers_recipe() -> None:
    def default(path: str) -> str:
        c = archlang.compile_spec((REPO / "archlang" / "specs" / path).read_text())
        return build_recipe(None, family=c.family, family_args=c.family_args, input_shape=c.input_shape,
                            train_args=c.train_args, train_spans=c.train_spans, spec_source=c.source).name

    assert default("wrn/wrn-16-4-dropout-svhn.arch") == "wrn-svhn"
    assert default("gated/wrn-22-4-gated.arch") == "gated-cifar-wrn"
    assert default("gated/wide-gated-resnet-28-10-dropout.arch") == "gated-cifar-wrn"
    assert default("wrn/wrn-16-4.arch") == "wrn-cifar"
