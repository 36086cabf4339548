"""Which dataset a recipe (or an analysis command) names, where it is read from, and its batches.

The papers' small datasets are held whole in memory (torchvision layout or ImageFolder tree/zip);
ImageNet is read image by image (stream). Training and the analysis commands both come here,
so that they read and normalise the data the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from archlang.errors import ArchlangError, shorten
from archlang.train.data import stream
from archlang.train.data.batching import Batching, BatchLoader
from archlang.train.data.imagefolder import load_imagefolder
from archlang.train.data.normalize import cached_zca, gcn, pixel_mean
from archlang.train.data.torchvision_sets import has_torchvision_copy, load_torchvision
from archlang.train.data.types import (
    GET_DATA_HINT,
    KNOWN_SHAPES,
    Dataset,
    Split,
    SplitLike,
    channel_stats,
    default_data_root,
)
from archlang.train.recipes import DATASETS, Recipe

# torchvision's RandomResizedCrop default, the "RandomSizedCrop" of the papers' ImageNet code.
DEFAULT_CROP_SCALE = (0.08, 1.0)


def dataset_name(recipe: Recipe, num_classes: int) -> str:
    if recipe.dataset == "cifar":
        return "cifar100" if num_classes == 100 else "cifar10"
    return recipe.dataset


def _imagefolder_candidate(name: str, data_dir: Path) -> Path | None:
    """An ImageFolder tree or zip for `name` inside or at data_dir, if there is one."""
    if data_dir.is_file() and data_dir.suffix == ".zip":
        return data_dir
    if (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        return data_dir
    for candidate in (f"{name}-jpeg.zip", f"{name}.zip", f"{name}-jpeg", name):
        p = data_dir / candidate
        if p.suffix == ".zip" and p.is_file():
            return p
        if p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir():
            return p
    return None


def load_dataset(name: str, *, data_dir: Path | None = None, download: bool | None = None,
                 cache_dir: Path | None = None, extra: bool = False,
                 input_shape: tuple[int, ...] | None = None) -> Dataset:
    """Load a dataset whole, as uint8 tensors.

    Without data_dir, torchvision downloads into ~/.cache/archlang/data (or $ARCHLANG_DATA).
    With data_dir (a local copy), nothing is downloaded unless download=True. `input_shape`
    (the network's) lets an ImageFolder refuse images of another size from their headers.
    """
    if name not in KNOWN_SHAPES and name != "imagefolder":
        raise ArchlangError(f"unknown dataset '{shorten(name)}'", hint=f"datasets: {', '.join(DATASETS)}")
    if download is None:
        download = data_dir is None
    root = Path(data_dir) if data_dir is not None else default_data_root()
    if data_dir is not None and not root.exists():
        raise ArchlangError(f"--data-dir does not exist (looking for {name})", path=str(root), hint=GET_DATA_HINT)
    folder = root if name == "imagefolder" else None
    if name in ("cifar10", "cifar100", "svhn") and not has_torchvision_copy(name, root):
        folder = _imagefolder_candidate(name, root)
    if folder is not None:
        expect = input_shape if name == "imagefolder" else KNOWN_SHAPES[name][0]
        data = load_imagefolder(folder, cache_dir, expect)
        train, test, origin = data.train, data.test, str(folder)
        num_classes = len(data.classes) if name == "imagefolder" else KNOWN_SHAPES[name][1]
        if name != "imagefolder" and len(data.classes) != num_classes:
            raise ArchlangError(f"the ImageFolder copy of {name} has {len(data.classes)} classes in train/, "
                                f"{name} has {num_classes}", path=origin)
    else:
        train, test = load_torchvision(name, root, download, extra)
        num_classes, origin = KNOWN_SHAPES[name][1], str(root)
    mean, std = channel_stats(train.images)
    return Dataset(name, train, test, num_classes, mean, std, origin)


def load_for_recipe(recipe: Recipe, num_classes: int, data_dir: Path | None, *, download: bool | None = None,
                    cache_dir: Path | None = None, input_shape: tuple[int, ...] | None = None,
                    name: str | None = None) -> Dataset:
    """The recipe's dataset (or `name`, when an analysis command says) from data_dir or the default folder."""
    name = name or dataset_name(recipe, num_classes)
    if name == "imagenet":
        if recipe.crop_size is None:
            raise ArchlangError("dataset imagenet needs a recipe with crop_size", hint="pass --recipe dirac-imagenet")
        root = data_dir if data_dir is not None else default_data_root() / "imagenet"
        train, test, classes = stream.load_imagenet(root, size=recipe.crop_size, resize=recipe.eval_resize(),
                                                    scale=recipe.crop_scale or DEFAULT_CROP_SCALE)
        return Dataset("imagenet", train, test, classes, None, None, str(root))
    return load_dataset(name, data_dir=data_dir, download=download, cache_dir=cache_dir,
                        extra=recipe.train_split == "train+extra", input_shape=input_shape)


def statistics(recipe: Recipe | None, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalisation statistics: the recipe's, else those computed from the training split.

    Per channel [C], or for pixel_mean and gcn the training split's mean image [C, H, W] (of the
    GCN'd images for gcn), std ones; gcn_zca's statistics are its whitening (`whitening`).
    """
    channels = data.train.sample_shape()[0]
    if recipe is not None and recipe.normalize in ("pixel_mean", "gcn"):
        images = _whole_split(data)
        scale = recipe.gcn_scale
        transform = (lambda x: x / 255.0) if recipe.normalize == "pixel_mean" else (lambda x: gcn(x, scale))
        return pixel_mean(images, transform), torch.ones(channels)
    if recipe is not None and recipe.mean is not None and recipe.std is not None:
        mean, std = torch.tensor(recipe.mean), torch.tensor(recipe.std)
        if mean.numel() != channels:
            raise ArchlangError(f"the recipe's mean and std have {mean.numel()} values but {data.name} images have "
                                f"{channels} channels", hint="give one value per channel")
        return mean, std
    if data.mean is None or data.std is None:
        return torch.zeros(channels), torch.ones(channels)  # only with normalize: scale (the recipe check enforces it)
    return data.mean, data.std


def _whole_split(data: Dataset) -> torch.Tensor:
    train = data.train
    if not isinstance(train, Split):  # the recipe check refuses these modes for streamed data
        raise ArchlangError(f"{data.name} is read image by image: per-pixel statistics need it in memory")
    return train.images.cpu()


def whitening(recipe: Recipe | None, data: Dataset, cache_dir: Path | None = None,
              device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """gcn_zca's ZCA (mean [D], W [D, D]) fitted (on `device`) on the GCN'd training split, cached;
    None for other modes."""
    if recipe is None or recipe.normalize != "gcn_zca":
        return None
    return cached_zca(_whole_split(data), recipe.gcn_scale, recipe.zca_bias, cache_dir, device)


def make_loader(split: SplitLike, recipe: Recipe | None, *, train: bool, workers: int | None = None,
                **common: Any) -> Batching:
    """The batch iterator for a split: whole-tensor batches, or streamed from disk (ImageNet).

    The recipe's augmentation applies to training batches only: padded crops and flips of the
    in-memory images, or RandomResizedCrop (set by the split's crop_size) and flips of streamed ones.
    `workers` (DataLoader processes) concerns streamed data alone.
    """
    flip = recipe is not None and recipe.flip and train
    if isinstance(split, stream.StreamSplit):
        return stream.StreamLoader(split, train=train, flip=flip, workers=workers, **common)
    crops = {"crop_pad": recipe.crop_pad, "pad_mode": recipe.pad_mode} if recipe is not None and train else {}
    if recipe is not None:
        common["gcn_scale"] = recipe.gcn_scale
    return BatchLoader(split, train=train, flip=flip, **crops, **common)


def evaluation_loader(recipe: Recipe | None, name: str, *, num_classes: int, input_shape: tuple[int, ...],
                      data_dir: Path | None, split: str, subset: int | None, batch_size: int) -> Batching:
    """Batches of one split for an analysis, read and normalised as in training (no augmentation)."""
    if recipe is None and name == "imagenet":
        raise ArchlangError("dataset imagenet needs a recipe (crop sizes, normalisation)",
                            hint="pass --recipe dirac-imagenet (or a YAML file)")
    if recipe is not None:
        data = load_for_recipe(recipe, num_classes, data_dir, input_shape=input_shape, name=name)
    else:
        data = load_dataset(name, data_dir=data_dir, input_shape=input_shape)
    if tuple(data.train.sample_shape()) != tuple(input_shape):
        raise ArchlangError(f"the network takes inputs of shape {tuple(input_shape)} but {data.name} images are "
                            f"{tuple(data.train.sample_shape())}", hint="pass the dataset the network was trained on")
    mean, std = statistics(recipe, data)
    chosen = data.train if split == "train" else data.test
    if subset:
        chosen = chosen.first(subset)
    return make_loader(chosen, recipe, train=False, batch_size=batch_size, mean=mean, std=std,
                       normalize=recipe.normalize if recipe is not None else "scale", device=torch.device("cpu"),
                       whiten=whitening(recipe, data))


def _analysis_recipe(compiled: Any, saved: Mapping[str, Any], dataset: str | None,
                     recipe: str | None) -> Recipe | None:
    """The recipe an analysis reads and normalises with: --recipe, else the run's resolved one, else
    (a spec with --weights and --dataset) the one `archlang train` would use, if it is for that dataset."""
    from pydantic import ValidationError

    from archlang.train.recipes import build_recipe

    if recipe is None and saved:
        if not isinstance(saved, Mapping):
            raise ArchlangError("the run's resolved recipe is not a mapping of fields", hint="pass --recipe NAME")
        try:
            return Recipe.model_validate(dict(saved))
        except ValidationError as exc:
            raise ArchlangError("the run's resolved recipe is not valid "
                                f"({shorten(str(exc.errors()[0]['msg']), 200)})", hint="pass --recipe NAME") from None
    if recipe is None and dataset is None:
        return None
    c = compiled
    try:
        chosen = build_recipe(recipe, family=c.family, family_args=c.family_args, input_shape=tuple(c.input_shape),
                              train_args=c.train_args, train_spans=c.train_spans, spec_source=c.source).recipe
    except ArchlangError:
        if recipe is not None:
            raise
        return None  # no default recipe for this network: plain /255 scaling
    if recipe is None and dataset_name(chosen, c.num_classes) != dataset:
        return None  # the family's recipe is for another dataset
    return chosen


def analysis_loader(compiled: Any, saved_recipe: Mapping[str, Any], run_info: Mapping[str, Any], *,
                    dataset: str | None, recipe: str | None, data_dir: str | None, split: str,
                    subset: int | None, batch_size: int) -> Batching:
    """Batches for an analysis command: the run's dataset, or the one --dataset / --recipe name."""
    chosen = _analysis_recipe(compiled, saved_recipe, dataset, recipe)
    name = dataset or run_info.get("dataset") or (dataset_name(chosen, compiled.num_classes) if chosen else None)
    if not name or not isinstance(name, str):
        raise ArchlangError("no dataset known for this network",
                            hint="analyse a run folder, or pass --dataset NAME (or --recipe) with a spec and --weights")
    saved = data_dir or run_info.get("data_dir")
    return evaluation_loader(chosen, name, num_classes=compiled.num_classes, input_shape=tuple(compiled.input_shape),
                             data_dir=Path(saved) if isinstance(saved, str) and saved else None, split=split,
                             subset=subset, batch_size=batch_size)
