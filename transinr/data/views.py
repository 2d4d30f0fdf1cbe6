"""Posed-view datasets for novel view synthesis, built from a config.

``build_view_dataset(config, split)`` gives a :class:`PosedViews` (a
:class:`~transinr.data.learnit.LearnitShapeNet` that knows the epoch schedule):

* ``data.name: shapes3d`` — the embedded procedural chairs / cars / lamps, built into
  ``$TRANSINR_DATA/shapes3d/64px`` on first use, only the config's category (100
  objects of 50 views: about 1.5 s an object on a CPU, so minutes); smaller
  resolutions that divide 64 are area-downsampled from it, others are built at their
  own size. ``data.root`` points at another build (``transinr build-3d --out …``).
* ``data.name: learnit`` — the learnit ShapeNet data (or anything rendered into its
  layout by ``transinr render-meshes``) under ``data.root``.

Training items: ``data.n_support`` support views and ``nvs.train_rays`` query rays
from ``nvs.train_query_views`` other views (and from the support views themselves with
``nvs.supervise_support_views``), all drawn from views
``0 … nvs.train_views-1``, of the train split of ``data.category`` under the data root and
of each ``data.train_sources`` entry (other categories, other sets); in the first ``nvs.foreground_epochs`` epochs a share
``nvs.foreground_fraction`` of the rays hits the object (so the model does not learn
"everything is white background" first).

Evaluation items (every other split): the first ``data.n_support`` views are the
support views and the query views are the held-out views ``nvs.train_views …`` (the
same set whatever the number of support views, so 1- and 2-view scores compare),
thinned to ``nvs.eval_views`` evenly spaced ones when that cap is set. Objects with
no view past ``nvs.train_views`` (small home-made sets) are scored on every
non-support view instead.

Out of distribution (``build_ood_view_dataset``): the test split of ``data.category`` in
the learnit-layout folder ``data.ood_root`` (the Sweet Home 3D furniture, say), or every
object there with ``data.ood_split: all``, read exactly like the test split above.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import Config, ConfigError
from .learnit import ALL_SPLITS, LEARNIT_HINT, LearnitShapeNet, find_category_dir, find_split_file

EMBEDDED_BUILD_RESOLUTION = 64


class PosedViews(LearnitShapeNet):
    """LearnitShapeNet plus the epoch schedule and fixed held-out query views.

    Extra args:
        foreground_schedule: (fraction, epochs): ``set_epoch(e)`` sets
            ``foreground_fraction`` to ``fraction`` while ``e < epochs``, else 0.
        heldout_from: on evaluation splits, query views are the views with index
            ``>= heldout_from`` (capped to ``max_query_views`` evenly spaced ones).
        supervise_support: on the train split, the support views are query views too
            (after the others), so query rays are drawn from them as well.
    """

    def __init__(self, *args, foreground_schedule: tuple[float, int] = (0.0, 0),
                 heldout_from: int | None = None, max_query_views: int | None = None,
                 supervise_support: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.foreground_schedule = foreground_schedule
        self.heldout_from = heldout_from
        self.max_query_views = max_query_views
        self.supervise_support = supervise_support
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop before each epoch's DataLoader is built."""
        if self.query_rays is None:
            return
        fraction, epochs = self.foreground_schedule
        self.foreground_fraction = fraction if epoch < epochs else 0.0

    def query_views_of(self, index: int) -> list[int]:
        """The held-out views an evaluation item renders (same for 1 and 2 support views)."""
        views = [v for v in self.objects[index]["views"] if v not in self.support_views]
        if self.heldout_from is not None:
            heldout = [v for v in views if v >= self.heldout_from]
            views = heldout or views
        if self.max_query_views is not None and len(views) > self.max_query_views:
            picks = np.linspace(0, len(views) - 1, self.max_query_views).round().astype(int)
            views = [views[i] for i in picks]
        return views

    def _choose_views(self, index: int) -> tuple[list[int], list[int]]:
        if self.split == "train":
            support, query = super()._choose_views(index)
            return support, query + support if self.supervise_support else query
        return list(self.support_views), self.query_views_of(index)

    @property
    def image_size(self) -> int:
        """Side of the (square) views in pixels, read without touching any RNG."""
        return int(self._load_views(0, [0]).shape[-1])


def _resolution(config: Config) -> int | None:
    """``data.resolution`` as pixels, or None for the files' own size ("native")."""
    value = config.data.resolution
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"data.resolution must be a positive number of pixels, got {value}")
        return value
    if value == "native":
        return None
    raise ValueError(f"data.resolution for view datasets must be pixels or 'native', got {value!r}")


def view_dataset_root(config: Config, split: str | None = None) -> Path:
    """Where the views of ``config.data`` live, building the embedded set if needed: all of
    it, or with ``split`` ("val", "test") only that split's objects (seconds, not minutes)."""
    data = config.data
    if data.root:
        return Path(data.root).expanduser()
    if data.name == "shapes3d":
        from .procedural_shapes import CATEGORIES, ensure_embedded_3d

        # Only the category the config reads is built (a third of the set's build time).
        category = data.category if data.category in CATEGORIES else data.category.rstrip("s")
        if category not in CATEGORIES:
            raise ConfigError(f"data.category: the embedded 3D set has {', '.join(CATEGORIES)}, "
                              f"got {data.category!r}")
        resolution = _resolution(config) or EMBEDDED_BUILD_RESOLUTION
        if resolution <= EMBEDDED_BUILD_RESOLUTION and EMBEDDED_BUILD_RESOLUTION % resolution == 0:
            resolution = EMBEDDED_BUILD_RESOLUTION
        if data.n_objects < 1:
            raise ConfigError(f"data.n_objects must be a positive number of objects, got {data.n_objects}")
        splits = None if split in (None, "train") else (split,)
        return ensure_embedded_3d(resolution, categories=(category,), n_objects_per_category=data.n_objects,
                                  splits=splits)
    raise ConfigError(f"dataset 'learnit' needs data.root=PATH. {LEARNIT_HINT}")


def ood_build_hint() -> str:
    from .sweethome3d import default_sweethome3d_root

    return (f"Build the real Sweet Home 3D chairs with: sudo apt-get install -y sweethome3d-furniture && "
            f"python -m transinr build-3d --source sweethome3d (it writes {default_sweethome3d_root()})")


def ood_view_root(config: Config) -> Path | None:
    """``data.ood_root`` as a path (None when unset), checked to hold the test split of
    ``data.category``: a missing folder is one error naming it and the command that builds
    it, raised before any training starts."""
    if config.data.ood_root is None:
        return None
    root = Path(config.data.ood_root).expanduser()
    try:
        find_split_file(root, config.data.category)
        find_category_dir(root, config.data.category)
    except FileNotFoundError:
        state = "does not exist" if not root.exists() else f"holds no '{config.data.category}' objects in the learnit layout"
        raise ConfigError(f"data.ood_root={config.data.ood_root!r}: the out-of-distribution folder {root} {state}. "
                          f"{ood_build_hint()}; or set data.ood_root=null") from None
    return root


def _check_view_counts(config: Config) -> None:
    data, nvs = config.data, config.nvs
    if data.name not in ("shapes3d", "learnit"):
        raise ValueError(f"build_view_dataset: data.name must be 'shapes3d' or 'learnit', got {data.name!r}")
    if nvs.train_views <= data.n_support + nvs.train_query_views - 1:
        raise ValueError(
            f"nvs.train_views={nvs.train_views} leaves no room for {data.n_support} support and "
            f"{nvs.train_query_views} query views per training object"
        )
    if nvs.train_support not in ("random", "fixed"):
        raise ConfigError(f"nvs.train_support must be 'random' or 'fixed', got {nvs.train_support!r}")


def train_sources(config: Config, root: Path) -> list[tuple[Path, str]]:
    """``data.train_sources`` as (root, category) pairs; each is checked to hold a split file
    and objects of its category, so a typo fails before training, naming the entry."""
    sources = []
    for entry in config.data.train_sources:
        path, _, category = entry.rpartition(":") if _names_a_category(entry) else (entry, "", "")
        source = (Path(path).expanduser() if path else root, category or config.data.category)
        try:
            find_split_file(*source)
            find_category_dir(*source)
        except FileNotFoundError:
            raise ConfigError(f"data.train_sources entry {entry!r}: {source[0]} holds no '{source[1]}' objects in "
                              f"the learnit layout. {LEARNIT_HINT}") from None
        sources.append(source)
    return sources


def _names_a_category(entry: str) -> bool:
    """Whether ``entry`` ends in ":CATEGORY" (a plain name, so "C:/data" stays a path)."""
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isidentifier() and len(head) != 1


def _views_in(root: Path, config: Config, split: str) -> PosedViews:
    """``split`` of the learnit-layout folder ``root``, as ``config`` trains or scores it."""
    data, nvs = config.data, config.nvs
    common = dict(root=root, category=data.category, n_support=data.n_support, resolution=_resolution(config),
                  cache=data.cache_in_memory, near=nvs.near, far=nvs.far, seed=config.train.seed)
    if split == "train":
        return PosedViews(split="train", n_query=nvs.train_query_views, train_views=range(nvs.train_views),
                          extra_sources=train_sources(config, root),
                          query_rays=nvs.train_rays, supervise_support=nvs.supervise_support_views,
                          fixed_train_support=nvs.train_support == "fixed",
                          foreground_schedule=(nvs.foreground_fraction, nvs.foreground_epochs), **common)
    return PosedViews(split=split, n_query="all", heldout_from=nvs.train_views,
                      max_query_views=nvs.eval_views, **common)


def build_view_dataset(config: Config, split: str) -> PosedViews:
    """The posed-view dataset of ``config`` for ``split`` ("train", "val" or "test")."""
    _check_view_counts(config)
    ood_view_root(config)  # a missing OOD folder fails now, not after hours of training
    return _views_in(view_dataset_root(config, split), config, split)


def build_ood_view_dataset(config: Config) -> PosedViews | None:
    """The test split of ``data.ood_root`` (every object with ``data.ood_split: all``) scored
    like the test split (same support and held-out views), or None when ``data.ood_root`` is
    unset."""
    root = ood_view_root(config)
    if root is None:
        return None
    if config.data.ood_split not in ("test", ALL_SPLITS):
        raise ConfigError(f"data.ood_split must be 'test' or '{ALL_SPLITS}', got {config.data.ood_split!r}")
    _check_view_counts(config)
    return _views_in(root, config, config.data.ood_split)
