"""Compatibility name for code written before archlang.train.data became a package."""

from archlang.train.data.select import dataset_name, load_for_recipe, make_loader, statistics, whitening

__all__ = ["dataset_name", "load_for_recipe", "make_loader", "statistics", "whitening"]
