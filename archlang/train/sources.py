"""Which dataset a recipe names, and the batch iterators over it.

The papers' small datasets are held whole in memory (archlang.train.data); ImageNet is read
image by image (archlang.train.stream). Training and the analysis commands both come here,
so that they read and normalise the data the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from archlang.errors import ArchlangError
from archlang.train import stream
from archlang.train.data import BatchLoader, Dataset, default_data_root, load_dataset
from archlang.train.recipes import Recipe

# torchvision's RandomResizedCrop default, the "RandomSizedCrop" of the papers' ImageNet code.
DEFAULT_CROP_SCALE = (0.08, 1.0)


def dataset_name(recipe: Recipe, num_classes: int) -> str:
    if recipe.dataset == "cifar":
        return "cifar100" if num_classes == 100 else "cifar10"
    return recipe.dataset


def load_for_recipe(recipe: Recipe, num_classes: int, data_dir: Path | None, *, download: bool | None = None,
                    cache_dir: Path | None = None) -> Dataset:
    """The recipe's dataset from data_dir (or the default download folder)."""
    if recipe.dataset == "imagenet":
        root = data_dir if data_dir is not None else default_data_root() / "imagenet"
        assert recipe.crop_size is not None  # Recipe's own check: dataset imagenet needs crop_size
        train, test, classes = stream.load_imagenet(root, size=recipe.crop_size, resize=recipe.eval_resize(),
                                                    scale=recipe.crop_scale or DEFAULT_CROP_SCALE)
        return Dataset("imagenet", train, test, classes, None, None, str(root))
    return load_dataset(dataset_name(recipe, num_classes), data_dir=data_dir, download=download, cache_dir=cache_dir,
                        extra=recipe.train_split == "train+extra")


def statistics(recipe: Recipe, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalisation statistics: the recipe's, else those computed from the training split."""
    channels = data.train.sample_shape()[0]
    if recipe.mean is not None and recipe.std is not None:
        mean, std = torch.tensor(recipe.mean), torch.tensor(recipe.std)
        if mean.numel() != channels:
            raise ArchlangError(f"the recipe's mean and std have {mean.numel()} values but {data.name} images have "
                                f"{channels} channels", hint="give one value per channel")
        return mean, std
    if data.mean is None or data.std is None:
        return torch.zeros(channels), torch.ones(channels)  # only with normalize: scale (the recipe check enforces it)
    return data.mean, data.std


def make_loader(split: Any, recipe: Recipe | None, *, train: bool, workers: int | None = None, **common: Any) -> Any:
    """The batch iterator for a split: whole-tensor batches, or streamed from disk (ImageNet).

    The recipe's augmentation applies to training batches only: padded crops and flips of the
    in-memory images, or RandomResizedCrop (set by the split's crop_size) and flips of streamed ones.
    `workers` (DataLoader processes) concerns streamed data alone.
    """
    flip = recipe is not None and recipe.flip and train
    if isinstance(split, stream.StreamSplit):
        return stream.StreamLoader(split, train=train, flip=flip, workers=workers, **common)
    crops = {"crop_pad": recipe.crop_pad, "pad_mode": recipe.pad_mode} if recipe is not None and train else {}
    return BatchLoader(split, train=train, flip=flip, **crops, **common)
