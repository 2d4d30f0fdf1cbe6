"""Datasets: the embedded defaults (emoji, procedural 3D shapes) and the paper's.

``build_dataset(config, split)`` maps a config's ``data`` section to a dataset;
modules are imported lazily so that, say, the 3D renderer's dependencies are only
needed by 3D experiments.
"""

from __future__ import annotations

from ..config import Config, ConfigError

IMAGE_DATASETS = ("emoji", "celeba", "imagenette", "folder")
VIEW_DATASETS = ("shapes3d", "learnit")


def build_dataset(config: Config, split: str):
    """The dataset for ``split`` ("train" or "test"; "val" where the data has one)."""
    data = config.data
    if data.name == "emoji":
        from .emoji import EmojiDataset
        return EmojiDataset(split=split, resolution=data.resolution)
    if data.name == "celeba":
        from .paper_images import CelebA
        return CelebA(_need_root(data), split=split, resolution=int(data.resolution))
    if data.name == "imagenette":
        from .paper_images import Imagenette
        # Imagenette has no test split; the paper reports on val.
        return Imagenette(_need_root(data), split="train" if split == "train" else "val",
                          resolution=int(data.resolution))
    if data.name == "folder":
        from .paper_images import ImageFolder
        return ImageFolder(_need_root(data), resolution=int(data.resolution), split=split)
    if data.name in VIEW_DATASETS:
        from .views import build_view_dataset
        return build_view_dataset(config, split)
    raise ValueError(
        f"unknown dataset {data.name!r}; available: {', '.join(IMAGE_DATASETS + VIEW_DATASETS)}"
    )


def _need_root(data) -> str:
    if not data.root:
        raise ConfigError(f"dataset {data.name!r} needs data.root=PATH (the folder it lives in)")
    return data.root
