"""ImageNet-style training: image files of every size, read image by image in DataLoader workers.

A tiny ImageFolder tree (train/ and val/, 6 classes, JPEGs of random sizes) stands in for
ILSVRC2012; the recipe is the shipped dirac-imagenet with smaller crops and batches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import archlang
from archlang.analysis.run import data_loader, error_percent, load_run
from archlang.errors import ArchlangError
from archlang.train import TrainOptions, train
from archlang.train.data import StreamLoader, load_imagenet
from archlang.train.recipes import build_recipe, default_recipe_name

CLASSES = ("n01", "n02", "n03", "n04", "n05", "n06")
SPEC = "wrn(depth=10, k=1, classes=6)"
SMALL = {"crop_size": 32, "resize": 36, "batch_size": 8, "eval_batch_size": 5, "epochs": 2}


def _tree(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for c in CLASSES:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = (int(v) for v in rng.integers(34, 80, size=2))
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{c}_{i}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("imagenet"), {"train": 5, "val": 2})


def _options(**kw) -> TrainOptions:
    return TrainOptions(progress=False, threads=1, checkpoint_every_s=0.0, log=lambda m: None, **kw)


def _loader(split, workers: int, train: bool = True) -> StreamLoader:
    return StreamLoader(split, batch_size=8, mean=torch.tensor([0.5, 0.5, 0.5]), std=torch.tensor([0.25, 0.25, 0.25]),
                        normalize="meanstd", device=torch.device("cpu"), train=train, flip=True, seed=3,
                        workers=workers)


def test_splits_list_the_tree_with_train_class_numbers(imagenet: Path) -> None:
    train_split, test_split, classes = load_imagenet(imagenet, size=32, resize=36, scale=(0.08, 1.0))
    assert classes == 6 and len(train_split) == 30 and len(test_split) == 12
    assert sorted(label for _, label in test_split.samples) == [i for i in range(6) for _ in range(2)]
    # The training list is mixed (a fixed permutation), so --subset sees several classes.
    assert len({label for _, label in train_split.first(8).samples}) > 2
    assert train_split.sample_shape() == (3, 32, 32)


def test_batches_do_not_depend_on_workers_or_resume_step(imagenet: Path) -> None:
    train_split, test_split, _ = load_imagenet(imagenet, size=32, resize=36, scale=(0.08, 1.0))
    in_process = list(_loader(train_split, workers=0).batches(epoch=1))
    in_workers = list(_loader(train_split, workers=2).batches(epoch=1))
    resumed = list(_loader(train_split, workers=2).batches(epoch=1, start_step=2))
    assert len(in_process) == 4 and [len(y) for _, y in in_process] == [8, 8, 8, 6]
    for (xa, ya), (xb, yb) in zip(in_process, in_workers):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(resumed[0][0], in_process[2][0])
    # Another epoch draws other crops; evaluation is deterministic centre crops.
    other = next(iter(_loader(train_split, workers=0).batches(epoch=2)))
    assert not torch.equal(other[0], in_process[0][0])
    first, again = (next(iter(_loader(test_split, workers=0, train=False).batches(0))) for _ in range(2))
    assert torch.equal(first[0], again[0]) and first[0].shape == (8, 3, 32, 32)


def test_training_the_loader_leaves_the_global_rng_alone(imagenet: Path) -> None:
    train_split, _, _ = load_imagenet(imagenet, size=32, resize=36, scale=(0.08, 1.0))
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    list(_loader(train_split, workers=0).batches(epoch=0))
    assert torch.equal(torch.rand(3), expected)


def test_imagenet_run_trains_resumes_exactly_and_reports_top5(imagenet: Path, tmp_path: Path) -> None:
    compiled = archlang.compile_spec(SPEC)
    straight = train(compiled, recipe="dirac-imagenet", overrides=SMALL, out=tmp_path, name="straight",
                     data_dir=imagenet, options=_options(workers=2))
    history = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0.0 <= h["test_error_top5"] <= h["test_error"] <= 100.0 for h in history)
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["dataset"] == "imagenet" and summary["train_images"] == 30
    assert summary["final_test_error_top5"] == history[-1]["test_error_top5"]
    # The analysis commands read the run's data the way training evaluated it.
    run = load_run(str(straight))
    assert error_percent(run.model, data_loader(run, "test", None)) == pytest.approx(summary["final_test_error"])

    # Stopped mid-epoch after 3 steps, resumed with another number of workers: the same run.
    train(compiled, recipe="dirac-imagenet", overrides=SMALL, out=tmp_path, name="split", data_dir=imagenet,
          options=_options(workers=0, max_steps=3))
    resumed = train(compiled, recipe="dirac-imagenet", overrides=SMALL, resume=tmp_path / "split", data_dir=imagenet,
                    options=_options(workers=1))
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_missing_imagenet_says_where_and_how_to_get_it(tmp_path: Path) -> None:
    compiled = archlang.compile_spec(SPEC)
    with pytest.raises(ArchlangError) as err:
        train(compiled, recipe="dirac-imagenet", overrides=SMALL, out=tmp_path / "runs", data_dir=tmp_path,
              options=_options())
    assert str(tmp_path) in str(err.value) and "image-net.org" in str(err.value)


def test_corrupt_image_is_a_clear_error(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", {"train": 2, "val": 1})
    (root / "train" / "n03" / "n03_0.JPEG").write_bytes(b"not a jpeg")
    train_split, _, _ = load_imagenet(root, size=32, resize=36, scale=(0.08, 1.0))
    with pytest.raises(ArchlangError, match="corrupted image .*n03_0.JPEG"):
        list(_loader(train_split, workers=1).batches(epoch=0))


def test_crop_size_must_fit_the_spec(imagenet: Path, tmp_path: Path) -> None:
    compiled = archlang.compile_spec(SPEC)
    with pytest.raises(ArchlangError, match=r"inputs of shape \(3, 32, 32\) but imagenet images are \(3, 48, 48\)"):
        train(compiled, recipe="dirac-imagenet", overrides={**SMALL, "crop_size": 48, "resize": 56}, out=tmp_path,
              data_dir=imagenet, options=_options())


def test_imagenet_recipe_checks_and_defaults(tmp_path: Path) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("dataset: imagenet\noptimizer: sgd\nlr: 0.1\nepochs: 1\nnormalize: scale\n")
    with pytest.raises(ArchlangError, match=r"mine.yaml:1:1: error: dataset imagenet needs crop_size"):
        build_recipe(str(recipe))
    with pytest.raises(ArchlangError, match="apply to dataset imagenet"):
        build_recipe("wrn-cifar", overrides={"crop_size": 224})
    with pytest.raises(ArchlangError, match=r"resize \(200\) must be at least crop_size \(224\)"):
        build_recipe("dirac-imagenet", overrides={"resize": 200})
    # Recipes that leave the ImageNet fields unset keep the resolved recipe (and its hash) they had.
    assert "crop_size" not in build_recipe("wrn-cifar").resolved_dict()
    assert build_recipe("dirac-imagenet").recipe.eval_resize() == 256
    assert default_recipe_name("diracnet", {"dataset": "imagenet"}, (3, 224, 224)) == "dirac-imagenet"
    assert default_recipe_name("resnet", {"depth": 18}, (3, 224, 224)) == "dirac-imagenet"
    assert default_recipe_name("diracnet", {}, (3, 32, 32)) == "dirac-cifar"
