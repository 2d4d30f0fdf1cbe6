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
    """The dataset for ``split``: "train" (augmented if ``data.augment`` says so), "test"
    ("val" where the data has one), or "ood" (the out-of-distribution set)."""
    data = config.data
    if split == "ood":
        return build_ood_dataset(config)
    if data.name == "emoji":
        from .emoji import EmojiDataset
        dataset = EmojiDataset(split=split, resolution=data.resolution)
        return augmented_training_set(config, dataset) if split == "train" else dataset
    if split == "train" and _augmenting(config):
        raise ConfigError(f"data.augment is implemented for the emoji set only, not {data.name!r}; "
                          "remove the data.augment section")
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


def _augmenting(config: Config) -> bool:
    from .augment import augment_enabled
    return augment_enabled(config.data.augment)


def augmented_training_set(config: Config, plain):
    """``plain`` (the emoji training split), or its augmentation stream if ``data.augment`` is on."""
    if not _augmenting(config):
        return plain
    import numpy as np
    import torch

    from .augment import AugmentedImages
    from .emoji import load_emoji_array, load_extra_artwork

    def channels_first(images):
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    augment = config.data.augment
    source = channels_first(load_emoji_array("train", augment.source))
    extra = [load_extra_artwork(name)["images"] for name in augment.extra_artwork]
    extra = channels_first(np.concatenate(extra)) if extra else None
    return AugmentedImages(source, plain, augment, seed=config.train.seed, extra=extra)


def plain_images(dataset):
    """The un-augmented images behind a training set (the set itself when not augmented)."""
    return getattr(dataset, "plain", dataset)


OOD_SETS = ("textures",)


def build_ood_dataset(config: Config, resolution: int | None = None):
    """The out-of-distribution set, or None: for images the set named by ``data.ood`` at
    the data's resolution; for view synthesis the test split of ``data.ood_root``."""
    if config.task == "nvs":
        from .views import build_ood_view_dataset
        return build_ood_view_dataset(config)
    name = config.data.ood
    if name is None or config.task != "image":
        return None
    if name != "textures":
        raise ConfigError(f"data.ood: unknown out-of-distribution set {name!r}; known: "
                          f"{', '.join(OOD_SETS)} (or null for none)")
    from .textures import TextureDataset
    if resolution is None:
        text = str(config.data.resolution).strip().lower()
        resolution = 128 if text == "full" else int(text)
    return TextureDataset(resolution=resolution)


def _need_root(data) -> str:
    if not data.root:
        raise ConfigError(f"dataset {data.name!r} needs data.root=PATH (the folder it lives in)")
    return data.root
