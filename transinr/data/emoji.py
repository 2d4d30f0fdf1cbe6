"""The embedded 2D dataset: Noto Color Emoji artwork, no download needed.

Where the pixels come from
    Google's Noto Color Emoji artwork (Apache-2.0, see ``assets/NOTO_EMOJI_LICENSE.txt``):
    the 128 x 128 bitmaps embedded in Debian's ``fonts-noto-color-emoji`` font. The font
    stores each glyph as a 136 x 128 bitmap whose 4 px left and right margins are always
    transparent; they are cropped away (losslessly: ``transinr/data/build_emoji.py`` checks it),
    which leaves the square 128 px artwork. Which emoji exist, their names, categories and
    skin-tone variants come from ``emoji.json`` of the npm package ``emoji-datasource-google``.

What ships with the package
    ``assets/emoji_64.npz`` (about 8 MB): every image composited on WHITE and reduced to
    64 x 64 by a 2 x 2 box average, as ``uint8`` ``(N, 64, 64, 3)``, plus per-image
    ``names``, ``unified`` code points, ``groups``, ``categories`` and ``split``.

Resolutions
    * ``64``: the shipped array as is.
    * ``32``: one more 2 x 2 box average of the 64 px array, done once per process for the
      whole set (exact area averaging, pixel-identical to Pillow's ``Image.reduce(2)``:
      no ringing, no blur beyond the pixel footprint).
    * ``"full"`` (or ``128``): the 128 px artwork. It is not shipped (12.5 MB compressed,
      185 MB in memory); ``python -m transinr build-emoji full`` renders it from the installed font
      into :func:`full_cache_path` (``$TRANSINR_DATA/emoji_full.npz`` or
      ``~/.cache/transinr/emoji_full.npz``).

Extra artwork (for the augmented training stream only)
    ``assets/twemoji_64.npz``: Twitter's Twemoji graphics (CC-BY 4.0, see
    ``assets/TWEMOJI_LICENSE.txt``) of TRAINING-split emoji only, 64 px on white, from the
    npm package ``emoji-datasource-twitter`` (``python -m transinr build-emoji twemoji``).
    ``data.augment.extra_artwork: [twemoji]`` adds them to the augmented stream as further
    source artwork (:func:`load_extra_artwork`); the plain splits never contain them.

Split (fixed, recorded in the shipped file)
    Every image belongs to a *group*: its base emoji together with all of the base's
    skin-tone variants. A group is in the test split when the SHA-256 of its base emoji's
    ``unified`` string (as written in emoji.json, e.g. ``"1F44D"``) read as an integer
    from its first 8 hex digits is divisible by 10 (:func:`split_of_group`): about 10 % of
    the groups, independent of any file order, and never a variant on the other side of
    its base. Exact and near-exact duplicate images (territories that share a flag design,
    skin-tone variants that the artwork draws identically, ...) were dropped at build time,
    so no picture appears in both splits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from transinr.data.errors import DatasetNotFoundError

__all__ = [
    "SPLITS",
    "EmojiDataset",
    "box_downsample",
    "emoji_info",
    "extra_artwork_path",
    "full_cache_path",
    "load_emoji_array",
    "load_emoji_index",
    "load_extra_artwork",
    "shipped_path",
    "split_of_group",
]

SPLITS = ("train", "test", "all")
SHIPPED_FILENAME = "emoji_64.npz"
FULL_FILENAME = "emoji_full.npz"
SHIPPED_RESOLUTION = 64
FULL_RESOLUTION = 128
# Fraction of groups in the test split is 1 / TEST_MODULUS.
TEST_MODULUS = 10

_INDEX_KEYS = ("names", "unified", "groups", "categories", "split")
# Further artwork sets for the augmented training stream (data.augment.extra_artwork):
# name -> the file in assets/ and the build-emoji command that writes it.
EXTRA_ARTWORK = {"twemoji": "twemoji_64.npz"}
_EXTRA_INDEX_KEYS = ("names", "unified", "bases", "categories")


def split_of_group(base_unified: str) -> str:
    """The split ("train" or "test") of the group whose base emoji is ``base_unified``.

    A hash of the code-point string, so the rule needs no file order and no random seed.
    """
    digest = hashlib.sha256(base_unified.encode("ascii")).hexdigest()
    return "test" if int(digest[:8], 16) % TEST_MODULUS == 0 else "train"


def box_downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` pixel blocks: ``(N, H, W, C)`` uint8 -> ``(N, H/f, W/f, C)``.

    Rounds halves up, like Pillow's ``Image.reduce``; ``H`` and ``W`` must be multiples
    of ``factor``.
    """
    n, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"box_downsample: size {h}x{w} is not a multiple of {factor}")
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c)
    # Integer sums are exact; adding half the divisor before the floor division rounds
    # halves up (np.round would round them to even and differ from Pillow).
    sums = blocks.astype(np.int32).sum(axis=(2, 4))
    area = factor * factor
    return ((sums + area // 2) // area).astype(np.uint8)


def shipped_path() -> Path:
    """The 64 px array installed with the package."""
    return Path(__file__).resolve().parent / "assets" / SHIPPED_FILENAME


def full_cache_path(root: str | os.PathLike | None = None) -> Path:
    """Where the full-resolution array lives: ``root``, else ``$TRANSINR_DATA``, else ``~/.cache/transinr``."""
    if root is not None:
        folder = Path(root)
    elif os.environ.get("TRANSINR_DATA"):
        folder = Path(os.environ["TRANSINR_DATA"])
    else:
        folder = Path.home() / ".cache" / "transinr"
    return folder.expanduser() / FULL_FILENAME


def _resolution_key(resolution: int | str) -> int | str:
    """Normalise ``32 | 64 | "full" | 128`` (also as strings, as YAML may give them)."""
    text = str(resolution).strip().lower()
    if text in ("full", str(FULL_RESOLUTION)):
        return "full"
    if text in ("32", "64"):
        return int(text)
    raise ValueError(f"emoji resolution must be 32, 64 or 'full' (128 px); got {resolution!r}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"emoji split must be one of {SPLITS}; got {split!r}")


def extra_artwork_path(name: str) -> Path:
    """The shipped file of the extra artwork set ``name`` (a key of ``EXTRA_ARTWORK``)."""
    if name not in EXTRA_ARTWORK:
        raise ValueError(f"data.augment.extra_artwork: unknown artwork set {name!r}; "
                         f"known: {', '.join(EXTRA_ARTWORK)}")
    return Path(__file__).resolve().parent / "assets" / EXTRA_ARTWORK[name]


def load_extra_artwork(name: str) -> dict[str, np.ndarray]:
    """The extra artwork set ``name``: ``images`` uint8 ``(M, 64, 64, 3)`` on white, and per
    image ``names``, ``unified``, ``bases`` (its group's base emoji) and ``categories``.

    Training-split emoji only; the arrays are the per-process cache, do not alter them.
    """
    return _read_asset(str(extra_artwork_path(name)), _EXTRA_INDEX_KEYS, name)


def _read_shipped(path: str) -> dict[str, np.ndarray]:
    """Every array of the shipped Noto file, decoded once per process."""
    return _read_asset(path, _INDEX_KEYS, "shipped")


@functools.lru_cache(maxsize=4)
def _read_asset(path: str, index_keys: tuple[str, ...], build_command: str) -> dict[str, np.ndarray]:
    """Every array of a shipped 64 px artwork file, decoded once per process."""
    file = Path(path)
    if not file.is_file():
        raise DatasetNotFoundError(
            f"the embedded emoji array {file} is missing. It ships inside the transinr "
            "package (package data 'data/assets/*'); reinstall with `pip install -e .`, or "
            f"rebuild it from a checkout with `python -m transinr build-emoji {build_command}`."
        )
    with np.load(file, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    expected = ("images",) + index_keys
    missing = [key for key in expected if key not in arrays]
    images = arrays.get("images")
    if missing or images is None or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[1:] != (SHIPPED_RESOLUTION, SHIPPED_RESOLUTION, 3):
        raise ValueError(
            f"{file} is not a valid emoji array: expected keys {expected} with 'images' "
            f"uint8 (N, {SHIPPED_RESOLUTION}, {SHIPPED_RESOLUTION}, 3); "
            f"got keys {sorted(arrays)}"
            + (f", images {images.dtype} {images.shape}" if images is not None else "")
        )
    return arrays


def load_emoji_index(split: str = "all") -> dict[str, np.ndarray]:
    """Per-image metadata of one split: ``names``, ``unified``, ``groups``, ``categories``, ``split``.

    Each value is an array of length ``N`` (the split's size), in the order of the images.
    """
    _check_split(split)
    arrays = _read_shipped(str(shipped_path()))
    mask = _split_mask(arrays["split"], split)
    return {key: arrays[key][mask] for key in _INDEX_KEYS}


def _split_mask(split_labels: np.ndarray, split: str) -> np.ndarray:
    if split == "all":
        return np.ones(len(split_labels), dtype=bool)
    return split_labels == split


@functools.lru_cache(maxsize=2)
def _read_full(path: str, shipped: str) -> np.ndarray:
    """The full-resolution array, checked against the shipped index (same emoji, same order)."""
    file = Path(path)
    if not file.is_file():
        raise DatasetNotFoundError(
            f"full-resolution emoji array not found at {file}. It is not shipped (too large); "
            "build it once from a checkout of the repository:\n"
            "    sudo apt-get install fonts-noto-color-emoji   # Debian/Ubuntu: the font\n"
            "    python -m transinr build-emoji full            # writes the file above\n"
            "Set TRANSINR_DATA=/some/folder (or pass root=...) to keep it elsewhere. "
            f"Expected layout: {FULL_FILENAME} holding 'images' uint8 "
            f"(N, {FULL_RESOLUTION}, {FULL_RESOLUTION}, 3) and 'unified' (N,) matching the shipped set."
        )
    with np.load(file, allow_pickle=False) as archive:
        if "images" not in archive.files or "unified" not in archive.files:
            raise ValueError(f"{file} is not a valid emoji array: expected keys 'images' and 'unified'; "
                             f"got {archive.files}")
        images, unified = archive["images"], archive["unified"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 \
            or images.shape[1] != images.shape[2]:
        raise ValueError(f"{file}: 'images' must be uint8 (N, S, S, 3); got {images.dtype} {images.shape}")
    expected = _read_shipped(shipped)["unified"]
    if unified.shape != expected.shape or not np.array_equal(unified, expected):
        raise ValueError(
            f"{file} was built for a different emoji index than the shipped "
            f"{Path(shipped).name} ({len(unified)} vs {len(expected)} images); "
            "rebuild it with `python -m transinr build-emoji full`."
        )
    return images


@functools.lru_cache(maxsize=1)
def _downsampled_32(shipped: str) -> np.ndarray:
    """The whole set at 32 px, computed once per process."""
    return box_downsample(_read_shipped(shipped)["images"], 2)


def load_emoji_array(split: str = "train", resolution: int | str = 32,
                     root: str | os.PathLike | None = None) -> np.ndarray:
    """The images of one split as ``uint8`` ``(N, H, W, 3)`` on a white background.

    ``resolution``: 32, 64 or "full" (128 px, needs the cache built by
    ``python -m transinr build-emoji full``; ``root`` is the folder holding it).
    """
    _check_split(split)
    key = _resolution_key(resolution)
    shipped = str(shipped_path())
    arrays = _read_shipped(shipped)
    if key == 64:
        images = arrays["images"]
    elif key == 32:
        images = _downsampled_32(shipped)
    else:
        images = _read_full(str(full_cache_path(root)), shipped)
    # Boolean indexing copies, so callers never alter the per-process cache.
    return images[_split_mask(arrays["split"], split)]


def emoji_info() -> dict:
    """Counts of the embedded set: images and groups per split, images per category."""
    arrays = _read_shipped(str(shipped_path()))
    info: dict = {}
    for split in SPLITS:
        mask = _split_mask(arrays["split"], split)
        info[split] = {"images": int(mask.sum()), "groups": int(len(np.unique(arrays["groups"][mask])))}
    categories, counts = np.unique(arrays["categories"], return_counts=True)
    info["categories"] = {str(c): int(n) for c, n in zip(categories, counts)}
    info["resolution_shipped"] = SHIPPED_RESOLUTION
    info["full_cache"] = str(full_cache_path())
    info["full_available"] = full_cache_path().is_file()
    if "meta" in arrays:
        info["meta"] = json.loads(str(arrays["meta"]))
    return info


class EmojiDataset(Dataset):
    """Noto Color Emoji images on white, as float tensors ``(3, H, W)`` in ``[0, 1]``.

    The whole split is decoded into memory at construction (a few MB at 32/64 px).

    Attributes:
        names: ``(N,)`` emoji short names; skin-tone variants end in ``:skin-tone-K``
            (``K`` = 2..6 as in the Fitzpatrick modifiers; two digits for two-person emoji).
        groups: ``(N,)`` int group ids (the base emoji shared by its skin-tone variants).
        categories: ``(N,)`` emoji.json categories ("Smileys & Emotion", "Flags", ...).
        unified: ``(N,)`` code points, e.g. ``"1F44D-1F3FD"``.
        resolution: side length in pixels.
    """

    def __init__(self, split: str = "train", resolution: int | str = 32, root: str | None = None):
        images = load_emoji_array(split, resolution, root)
        index = load_emoji_index(split)
        self.split = split
        self.names: list[str] = [str(n) for n in index["names"]]
        self.unified: list[str] = [str(u) for u in index["unified"]]
        self.groups: np.ndarray = index["groups"].astype(np.int64)
        self.categories: list[str] = [str(c) for c in index["categories"]]
        self.resolution: int = int(images.shape[1])
        # uint8 channels-first once; each item is converted to float on access.
        self._images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    def __len__(self) -> int:
        return self._images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 ``(3, H, W)`` in ``[0, 1]``."""
        return self._images[index].float().div_(255.0)

    def __repr__(self) -> str:
        return f"EmojiDataset(split={self.split!r}, resolution={self.resolution}, n={len(self)})"
