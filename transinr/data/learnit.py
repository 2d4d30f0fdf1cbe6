"""The learnit ShapeNet multi-view dataset (and anything written in its layout).

Layout, as published with "Learned Initializations for Optimizing Coordinate-Based
Neural Representations" (Tancik et al., CVPR 2021)::

    <root>/<category>_splits.json          {"train": [ids], "val": [ids], "test": [ids]}
    <root>/<category>/<id>/transforms.json {"camera_angle_x": rad,
                                            "frames": [{"file_path": "./r_000",
                                                        "transform_matrix": 4x4}, ...]}
    <root>/<category>/<id>/r_000.png       RGBA views (128 px, 50 per object)

The published data names the split files ``chair_splits.json`` and the object
folders ``chairs/``; both the singular and the plural spelling are accepted.
``transform_matrix`` is camera-to-world with x right, y up, looking down -z
(see :mod:`transinr.render`).

Which views an item uses:

* ``train``: support and query views are drawn at random (without replacement)
  from ``train_views`` (views 0-24 as in learnit, whose views 25-49 are held out);
  with ``fixed_train_support`` the support views are the evaluation's (below) and only
  the query views are drawn.
* ``val`` / ``test``: the support views are fixed, ``support_views`` or else the
  first ``n_support`` views of the object (view 0 for one view, views 0 and 1 for
  two), so evaluation is reproducible; the query views are all the other views
  (``n_query="all"``) or ``n_query`` of them drawn with a generator seeded by
  ``(seed, item index)``.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..render import focal_from_angle, get_rays
from .errors import CorruptImageError

LEARNIT_HINT = (
    "Expected layout: <root>/<category>_splits.json (train/val/test object ids) and "
    "<root>/<category>/<id>/transforms.json with RGBA PNG views. The ShapeNet chairs, "
    "cars and lamps data comes from the learnit project (Tancik et al., 'Learned "
    "Initializations for Optimizing Coordinate-Based Neural Representations', CVPR 2021; "
    "github.com/tancik/learnit, 'Data' link of its project page). For a dataset that "
    "needs no download, build the procedural one: python -m transinr build-3d, or "
    "render your own meshes: python -m transinr render-meshes."
)

SPLITS = ("train", "val", "test")
# Every object of the split file, read as an evaluation split (out-of-distribution folders
# that no model trained on: their whole set is a held-out set).
ALL_SPLITS = "all"


def _spellings(category: str) -> list[str]:
    """'chair' -> ['chair', 'chairs']; 'chairs' -> ['chairs', 'chair']."""
    names = [category]
    names.append(category[:-1] if category.endswith("s") else category + "s")
    return names


def find_split_file(root: Path, category: str) -> Path:
    for name in _spellings(category):
        path = root / f"{name}_splits.json"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"No split file for category '{category}' in {root} "
        f"(looked for {', '.join(n + '_splits.json' for n in _spellings(category))}). {LEARNIT_HINT}"
    )


def find_category_dir(root: Path, category: str) -> Path:
    for name in _spellings(category):
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(
        f"No object folder for category '{category}' in {root} "
        f"(looked for {', '.join(_spellings(category))}/). {LEARNIT_HINT}"
    )


def _frame_image_path(object_dir: Path, file_path: str) -> Path | None:
    """Resolve a frame's ``file_path`` (usually without extension) to an existing PNG."""
    rel = Path(file_path)
    candidates = [object_dir / rel, object_dir / rel.name]
    for base in candidates:
        for path in (base, base.with_name(base.name + ".png")):
            if path.is_file():
                return path
    return None


def _read_object(object_dir: Path) -> tuple[float, list[Path], np.ndarray]:
    """Parse one object's transforms.json; raise ValueError saying what is wrong."""
    meta_path = object_dir / "transforms.json"
    if not meta_path.is_file():
        raise ValueError("transforms.json missing")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        angle = float(meta["camera_angle_x"])
        if not (math.isfinite(angle) and 0.0 < angle < math.pi):
            raise ValueError(f"camera_angle_x is {angle}, expected a finite angle in (0, π) radians")
        frames = meta["frames"]
        if not isinstance(frames, list) or not frames:
            raise ValueError("'frames' is empty")
        poses, paths = [], []
        for frame in frames:
            matrix = np.asarray(frame["transform_matrix"], dtype=np.float32)
            if matrix.shape == (3, 4):
                matrix = np.concatenate([matrix, [[0, 0, 0, 1]]]).astype(np.float32)
            if matrix.shape != (4, 4):
                raise ValueError(f"transform_matrix of shape {matrix.shape}, expected 4x4")
            if not np.isfinite(matrix).all():
                raise ValueError(f"frame '{frame.get('file_path')}': transform_matrix holds NaN or inf")
            image = _frame_image_path(object_dir, str(frame["file_path"]))
            if image is None:
                raise ValueError(f"image for frame '{frame['file_path']}' missing")
            poses.append(matrix)
            paths.append(image)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"malformed transforms.json ({type(err).__name__}: {err})") from None
    return angle, paths, np.stack(poses)


def load_rgba(path: Path) -> np.ndarray:
    """PNG -> ``(H, W, 4)`` uint8.

    Images without an alpha channel are taken as already composited on white: pure
    white pixels get alpha 0 (background), all others alpha 255.
    """
    try:
        with Image.open(path) as img:
            has_alpha = "A" in img.getbands() or "transparency" in img.info
            rgba = np.array(img.convert("RGBA"))
    except (OSError, ValueError, SyntaxError) as error:
        raise CorruptImageError(f"{path}: cannot decode this view as a PNG image ({error})",
                                path=str(path), reason=str(error)) from None
    if not has_alpha:
        rgba[..., 3] = np.where((rgba[..., :3] == 255).all(axis=-1), 0, 255)
    return rgba


class LearnitShapeNet(Dataset):
    """Posed views of objects: support views in, query views (or rays) out.

    Args:
        root: dataset root (see module docstring for the layout).
        category: "chair", "car", "lamp" or any name with a ``<name>_splits.json``.
        split: "train", "val", "test", or "all" (every object of the split file, read
            like an evaluation split).
        n_support: support views per item.
        n_query: query views per item, or "all" (every view that is not support;
            on the train split every remaining view of ``train_views``).
        train_views: view indices the train split draws from.
        fixed_train_support: train items use ``support_views`` too (for a set whose view 0
            is one canonical camera, ``build-3d --first-view``); queries stay random.
        support_views: fixed support view indices for val/test (default: the first
            ``n_support``).
        resolution: resize views to this size (area averaging); focal scales along.
        query_rays: if an int, sample that many query rays per item from the query
            views instead of returning whole views.
        foreground_fraction: with ``query_rays``, this fraction of the rays comes from
            foreground pixels (alpha > 0; non-white where a PNG has no alpha), the rest
            from all pixels. Settable between epochs (the paper uses 0.5 in the first
            epoch, then 0).
        cache: keep decoded views in memory (for small datasets).
        near, far: depth bounds returned with each item.
        seed: seeds the val/test query draw when ``n_query`` is an int.
        extra_sources: more ``(root, category)`` pairs in the same layout whose objects of
            ``split`` join this dataset (training on several categories or sets at once).

    Item (V support, Q query views, R query rays, H x W pixels)::

        support_rgb (V, 3, H, W)  support_rays_o/_d (V, H, W, 3)  support_poses (V, 4, 4)
        query_rgb (Q, 3, H, W) or (R, 3)   query_rays_o/_d (Q, H, W, 3) or (R, 3)
        query_poses (Q, 4, 4)   focal ()   near ()   far ()   object_id str

    Colours are in [0, 1], composited on white.
    """

    def __init__(
        self,
        root,
        category: str,
        split: str = "train",
        n_support: int = 1,
        n_query: int | str = 1,
        train_views: Sequence[int] = range(25),
        support_views: Sequence[int] | None = None,
        resolution: int | None = None,
        query_rays: int | None = None,
        foreground_fraction: float = 0.0,
        cache: bool = False,
        near: float = 2.0,
        far: float = 6.0,
        seed: int = 0,
        extra_sources: Sequence[tuple[str | Path, str]] = (),
        fixed_train_support: bool = False,
    ):
        if split not in SPLITS + (ALL_SPLITS,):
            raise ValueError(f"split must be one of {SPLITS + (ALL_SPLITS,)}, got '{split}'")
        if n_query != "all" and (not isinstance(n_query, int) or n_query < 1):
            raise ValueError(f"n_query must be a positive int or 'all', got {n_query!r}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Dataset root {self.root} does not exist. {LEARNIT_HINT}")
        self.category, self.split = category, split
        self.n_support, self.n_query = n_support, n_query
        self.train_views = list(train_views)
        self.support_views = list(support_views) if support_views is not None else list(range(n_support))
        if len(self.support_views) != n_support:
            raise ValueError(f"support_views {self.support_views} must list n_support={n_support} views")
        self.resolution = resolution
        self.query_rays = query_rays
        self.foreground_fraction = foreground_fraction
        self.near, self.far, self.seed = near, far, seed
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None
        self.fixed_train_support = fixed_train_support

        # The objects of this split: those of ``category`` under ``root``, then those of each
        # extra (root, category) source, all read the same way.
        self.objects: list[dict] = []
        for source_root, source_category in [(self.root, category), *extra_sources]:
            self.objects += self._read_split(Path(source_root).expanduser(), source_category, split)

    def _read_split(self, root: Path, category: str, split: str) -> list[dict]:
        """The usable objects of ``split`` of ``category`` under ``root`` (a warning names the
        skipped ones; none usable is an error naming the folder)."""
        split_file = find_split_file(root, category)
        try:
            with open(split_file) as f:
                splits = json.load(f)
            ids = [i for name in SPLITS for i in splits.get(name, [])] if split == ALL_SPLITS else splits[split]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{split_file}: expected a JSON object with a '{split}' list of ids ({err})") from None
        category_dir = find_category_dir(root, category)

        objects: list[dict] = []
        skipped: list[tuple[str, str]] = []
        for object_id in ids:
            object_id = str(object_id)
            try:
                angle, paths, poses = _read_object(category_dir / object_id)
                views = self._usable_views(len(paths))
            except ValueError as err:
                skipped.append((object_id, str(err)))
                continue
            objects.append(dict(id=object_id, angle=angle, paths=paths, poses=poses, views=views))
        if skipped:
            examples = "; ".join(f"{i}: {why}" for i, why in skipped[:5])
            warnings.warn(
                f"{category_dir}: skipped {len(skipped)} of {len(ids)} '{split}' objects with missing or "
                f"malformed files (e.g. {examples})",
                stacklevel=2,
            )
        if not objects:
            raise FileNotFoundError(f"No usable '{split}' objects for '{category}' under {category_dir}. {LEARNIT_HINT}")
        return objects

    def _usable_views(self, n_frames: int) -> list[int]:
        """The views an object offers to this split; ValueError if too few."""
        needed = self.n_support + (1 if self.n_query == "all" else self.n_query)
        if self.split == "train":
            views = [v for v in self.train_views if v < n_frames]
        else:
            views = list(range(n_frames))
            if max(self.support_views) >= n_frames:
                raise ValueError(f"only {n_frames} views, support views {self.support_views} requested")
        if len(views) < needed:
            raise ValueError(f"only {len(views)} usable views, {needed} needed")
        return views

    def __len__(self) -> int:
        return len(self.objects)

    # -- decoding -----------------------------------------------------------------

    def _load_views(self, index: int, views: Sequence[int]) -> torch.Tensor:
        """Views of one object as float ``(V, 4, H, W)`` RGBA in [0, 1], resized."""
        obj = self.objects[index]
        if self._cache is not None:
            if index not in self._cache:
                all_views = range(len(obj["paths"]))
                self._cache[index] = self._decode(obj["paths"], all_views)
            return self._cache[index][list(views)].float() / 255.0
        return self._decode(obj["paths"], views).float() / 255.0

    def _decode(self, paths: list[Path], views: Sequence[int]) -> torch.Tensor:
        arrays = []
        for v in views:
            rgba = load_rgba(paths[v])
            if arrays and rgba.shape != arrays[0].shape:
                raise ValueError(f"{paths[v]}: size {rgba.shape[:2]} differs from {arrays[0].shape[:2]} of the other views")
            arrays.append(rgba)
        rgba = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()  # (V, 4, H, W)
        alpha = rgba[:, 3:] / 255.0
        # Composite on white before any resizing, so edges blend towards white.
        images = torch.cat([rgba[:, :3] * alpha + 255.0 * (1.0 - alpha), rgba[:, 3:]], dim=1)
        if self.resolution is not None and images.shape[-1] != self.resolution:
            size = (round(self.resolution * images.shape[-2] / images.shape[-1]), self.resolution)
            images = F.interpolate(images, size=size, mode="area")
        images = images.round().clamp(0, 255).to(torch.uint8)
        return images  # (V, 4, H, W): colour on white, alpha kept for the foreground mask

    # -- items --------------------------------------------------------------------

    def _choose_views(self, index: int) -> tuple[list[int], list[int]]:
        views = self.objects[index]["views"]
        if self.split == "train":
            order = torch.randperm(len(views)).tolist()
            shuffled = [views[i] for i in order]
            if self.fixed_train_support:  # the evaluation's support views, queries drawn from the rest
                support = list(self.support_views)
                rest = [v for v in shuffled if v not in support]
            else:
                support = shuffled[: self.n_support]
                rest = shuffled[self.n_support :]
            query = rest if self.n_query == "all" else rest[: self.n_query]
            return support, query
        support = self.support_views
        rest = [v for v in views if v not in support]
        if self.n_query == "all":
            return support, rest
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        picks = torch.randperm(len(rest), generator=generator)[: self.n_query].sort().values.tolist()
        return support, [rest[i] for i in picks]

    def __getitem__(self, index: int) -> dict:
        obj = self.objects[index]
        support, query = self._choose_views(index)
        images = self._load_views(index, support + query)  # (V+Q, 4, H, W)
        height, width = images.shape[-2:]
        focal = focal_from_angle(obj["angle"], width)
        poses = torch.from_numpy(obj["poses"][support + query])
        rays_o, rays_d = get_rays(poses, focal, height, width)
        n_s = len(support)
        item = {
            "support_rgb": images[:n_s, :3],
            "support_rays_o": rays_o[:n_s],
            "support_rays_d": rays_d[:n_s],
            "support_poses": poses[:n_s],
            "query_poses": poses[n_s:],
            "focal": torch.tensor(focal, dtype=torch.float32),
            "near": torch.tensor(self.near, dtype=torch.float32),
            "far": torch.tensor(self.far, dtype=torch.float32),
            "object_id": obj["id"],
        }
        query_rgb, query_o, query_d = images[n_s:, :3], rays_o[n_s:], rays_d[n_s:]
        if self.query_rays is None:
            item.update(query_rgb=query_rgb, query_rays_o=query_o, query_rays_d=query_d)
            return item
        flat_rgb = query_rgb.permute(0, 2, 3, 1).reshape(-1, 3)
        flat_alpha = images[n_s:, 3].reshape(-1)
        picks = self._sample_rays(flat_alpha)
        item.update(
            query_rgb=flat_rgb[picks],
            query_rays_o=query_o.reshape(-1, 3)[picks],
            query_rays_d=query_d.reshape(-1, 3)[picks],
        )
        return item

    def _sample_rays(self, alpha: torch.Tensor) -> torch.Tensor:
        """Indices of ``query_rays`` pixels, a share of them on the foreground."""
        n_rays, n_pixels = self.query_rays, alpha.numel()
        n_fg = math.ceil(self.foreground_fraction * n_rays)
        foreground = torch.nonzero(alpha > 0).squeeze(1)
        if n_fg == 0 or foreground.numel() == 0:
            return torch.randint(n_pixels, (n_rays,))
        fg = foreground[torch.randint(foreground.numel(), (n_fg,))]
        anywhere = torch.randint(n_pixels, (n_rays - n_fg,))
        return torch.cat([fg, anywhere])
