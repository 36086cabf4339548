"""Training data, one module per job.

- types: Split (whole uint8 tensors), the SplitLike protocol it shares with stream.StreamSplit,
  Dataset, channel statistics;
- torchvision_sets: MNIST, CIFAR-10/100, SVHN in torchvision's layout;
- folders, imagefolder, cache: ImageFolder trees and zips, read with bounds, decoded once, cached;
- stream: ImageNet, read image by image in DataLoader workers;
- batching: whole-batch augmentation and per-process shards;
- normalize: per-pixel mean, global contrast normalisation and ZCA, fitted on the training split;
- select: which dataset a recipe or an analysis names, and the loader over it.
"""

from archlang.train.data.batching import Batching, BatchLoader, EpochPlan
from archlang.train.data.imagefolder import load_imagefolder
from archlang.train.data.select import (
    dataset_name,
    evaluation_loader,
    load_dataset,
    load_for_recipe,
    make_loader,
    statistics,
    whitening,
)
from archlang.train.data.stream import StreamLoader, StreamSplit, load_imagenet
from archlang.train.data.types import (
    KNOWN_SHAPES,
    Dataset,
    FolderData,
    Split,
    SplitLike,
    channel_stats,
    default_cache_dir,
    default_data_root,
)

__all__ = [
    "KNOWN_SHAPES", "BatchLoader", "Batching", "Dataset", "EpochPlan", "FolderData", "Split", "SplitLike",
    "StreamLoader", "StreamSplit", "channel_stats", "dataset_name", "default_cache_dir", "default_data_root",
    "evaluation_loader", "load_dataset", "load_for_recipe", "load_imagefolder", "load_imagenet", "make_loader",
    "statistics", "whitening",
]
