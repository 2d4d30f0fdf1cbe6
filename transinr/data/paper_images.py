"""The image datasets of the paper (CelebA, Imagenette) and any folder of images.

Every dataset yields float32 tensors ``(3, S, S)`` in ``[0, 1]`` with ``S = resolution``.

Unreadable files (see :func:`transinr.data.image_io.load_rgb`) never crash a
DataLoader worker. ``__getitem__`` skips such a file: it warns once with
:class:`~transinr.data.errors.SkippedImageWarning` naming the file and the reason,
records it in ``dataset.skipped`` and serves the next readable index instead (so a
batch may hold one image twice). After ``max_consecutive_failures`` (50) unreadable
files in a row it raises :class:`~transinr.data.errors.TooManyCorruptImagesError`
listing them, since by then the folder itself is probably broken.
``dataset.skipped`` is backed by shared memory, so it also collects the files that
DataLoader worker processes skipped. ``dataset.verify()`` decodes every file up front
and returns the unreadable ones.
"""

from __future__ import annotations

import hashlib
import operator
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from transinr.data.errors import (
    CorruptImageError,
    DatasetNotFoundError,
    SkippedImageWarning,
    TooManyCorruptImagesError,
)
from transinr.data.image_io import (
    IMAGE_EXTENSIONS,
    center_crop,
    is_image_file,
    load_rgb,
    random_crop,
    resize_shorter_side,
    to_tensor,
)

__all__ = ["CelebA", "ImageFileDataset", "ImageFolder", "Imagenette"]

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
IMAGENETTE_URL = "https://github.com/fastai/imagenette"
IMAGENETTE_ARCHIVE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"


class ImageFileDataset(Dataset):
    """A fixed list of image files, each decoded and transformed to ``(3, S, S)``.

    Subclasses set ``self.files`` through ``__init__`` and implement :meth:`_transform`;
    they may override :meth:`_decode` (e.g. to pass ``target_size``).
    """

    #: Unreadable files in a row after which ``__getitem__`` gives up.
    max_consecutive_failures: int = 50

    def __init__(self, files: Sequence[Path], resolution: int):
        if int(resolution) != resolution or resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        self.files: list[Path] = [Path(f) for f in files]
        self.resolution = int(resolution)
        # Shared memory so that failures seen in DataLoader worker processes are
        # visible in the main process (plain attributes would stay in the worker copy).
        self._failed = torch.zeros(len(self.files), dtype=torch.bool).share_memory_()
        self._reasons: dict[int, str] = {}  # per process: the reason of each failure seen here

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 ``(3, S, S)`` in ``[0, 1]``; skips unreadable files."""
        count = len(self.files)
        index = operator.index(index)
        if not -count <= index < count:
            raise IndexError(f"index {index} is out of range for a dataset of {count} images")
        index %= count
        failures: list[tuple[int, str]] = []
        for offset in range(count):
            current = (index + offset) % count
            if not self._failed[current]:
                try:
                    return to_tensor(self._transform(self._decode(current), current))
                except (CorruptImageError, OSError) as err:
                    self._record_failure(current, err)
            failures.append((current, self._reasons.get(current)))
            if len(failures) >= self.max_consecutive_failures:
                break
        raise TooManyCorruptImagesError(self._too_many_failures_message(index, failures))

    @property
    def skipped(self) -> set[Path]:
        """Files found unreadable so far, in this process or in any DataLoader worker."""
        return {self.files[i] for i in torch.nonzero(self._failed).flatten().tolist()}

    def verify(self, num_threads: int | None = None, progress: bool = True) -> list[tuple[Path, str]]:
        """Decode every file once and return ``[(path, reason), ...]`` for the unreadable ones.

        Unreadable files are also recorded in :attr:`skipped`, so training skips them
        without retrying. Decoding runs on ``num_threads`` threads (Pillow releases the GIL
        while decoding); ``None`` picks ``min(8, cpu count)``.
        """
        threads = num_threads or min(8, os.cpu_count() or 1)

        def check(index: int) -> str | None:
            try:
                self._decode(index)
            except (CorruptImageError, OSError) as err:
                return _reason_of(err)
            return None

        with ThreadPoolExecutor(max_workers=threads) as pool:
            reasons = list(
                tqdm(
                    pool.map(check, range(len(self.files))),
                    total=len(self.files),
                    desc=f"verifying {type(self).__name__} images",
                    disable=not progress,
                )
            )
        problems = []
        for index, reason in enumerate(reasons):
            if reason is not None:
                self._failed[index] = True
                self._reasons[index] = reason
                problems.append((self.files[index], reason))
        return problems

    def _decode(self, index: int) -> np.ndarray:
        """File ``index`` as ``uint8`` ``(H, W, 3)``."""
        return load_rgb(self.files[index])

    def _transform(self, img: np.ndarray, index: int) -> np.ndarray:
        """``uint8`` ``(H, W, 3)`` -> ``uint8`` ``(S, S, 3)``."""
        raise NotImplementedError

    def _record_failure(self, index: int, err: Exception) -> None:
        reason = _reason_of(err)
        self._reasons[index] = reason
        if not self._failed[index]:
            self._failed[index] = True
            warnings.warn(
                f"Skipping unreadable image '{self.files[index]}': {reason}. Serving the next "
                f"readable image instead; see .skipped, or run .verify() to check all files.",
                SkippedImageWarning,
                stacklevel=3,
            )

    def _too_many_failures_message(self, index: int, failures: list[tuple[int, str | None]]) -> str:
        lines = []
        for i, reason in failures:
            if reason is None:  # found by another worker process: decode again for the reason
                reason = self._reason_for(i)
            lines.append(f"  {self.files[i]}: {reason}")
        listing = "\n".join(lines)
        return (
            f"{type(self).__name__}: {len(failures)} consecutive images could not be read, "
            f"starting at index {index} of {len(self.files)}. Is the dataset folder intact? "
            f"Run .verify() to list every unreadable file.\n{listing}"
        )

    def _reason_for(self, index: int) -> str:
        try:
            self._decode(index)
        except (CorruptImageError, OSError) as err:
            return _reason_of(err)
        return "unreadable earlier, readable now (a flaky disk or network file system?)"

    def __repr__(self) -> str:
        split = f"split={self.split!r}, " if hasattr(self, "split") else ""
        root = f", root='{self.root}'" if hasattr(self, "root") else ""
        return f"{type(self).__name__}({split}{len(self.files)} images, resolution={self.resolution}{root})"


class CelebA(ImageFileDataset):
    """CelebA aligned-and-cropped faces (178x218 JPEGs) with the official split.

    Layout: ``root/img_align_celeba/000001.jpg ... 202599.jpg``. The doubly nested
    ``root/img_align_celeba/img_align_celeba/`` that some archives unpack to, and ``root``
    being the image folder itself, are accepted too.

    Preprocessing as in the paper: central square crop (178x178 out of 178x218), then a
    bilinear resize to ``resolution`` if that differs from the crop size.

    Split boundaries (1-based file indices, inclusive) are the class attribute
    :attr:`SPLITS`; override it (subclass or monkeypatch) for a custom split. Missing
    files of a split (a partial download) are left out with one warning giving the count.
    """

    SPLITS: dict[str, tuple[int, int]] = {
        "train": (1, 162770),
        "val": (162771, 182637),
        "test": (182638, 202599),
    }
    IMAGE_FOLDER = "img_align_celeba"

    def __init__(self, root: str | Path, split: str = "train", resolution: int = 178):
        if split not in self.SPLITS:
            raise ValueError(f"CelebA split must be one of {sorted(self.SPLITS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        first, last = self.SPLITS[split]
        folder, names_by_index = self._find_image_folder()
        present = [i for i in range(first, last + 1) if i in names_by_index]
        expected = last - first + 1
        if not present:
            raise DatasetNotFoundError(
                f"CelebA {split} split: none of its images ({first:06d}.jpg to {last:06d}.jpg) "
                f"are in '{folder}', which holds {len(names_by_index)} other CelebA images "
                f"(a partial download?). {self._layout_help()}"
            )
        if len(present) < expected:
            warnings.warn(
                f"CelebA {split} split: {expected - len(present)} of {expected} images are "
                f"missing from '{folder}' (a partial download?); using the {len(present)} "
                "that exist.",
                stacklevel=2,
            )
        self.image_folder = folder
        super().__init__([folder / names_by_index[i] for i in present], resolution)

    def _find_image_folder(self) -> tuple[Path, dict[int, str]]:
        candidates = [
            self.root / self.IMAGE_FOLDER / self.IMAGE_FOLDER,
            self.root / self.IMAGE_FOLDER,
            self.root,
        ]
        for folder in candidates:
            if folder.is_dir():
                names_by_index = _celeba_names_by_index(folder)
                if names_by_index:
                    return folder, names_by_index
        if not self.root.is_dir():
            found = f"'{self.root}' does not exist"
        elif not (self.root / self.IMAGE_FOLDER).is_dir():
            found = f"'{self.root}' has no '{self.IMAGE_FOLDER}' folder"
        else:
            found = f"'{self.root / self.IMAGE_FOLDER}' holds no files named like 000001.jpg"
        raise DatasetNotFoundError(f"CelebA not found: {found}. {self._layout_help()}")

    def _layout_help(self) -> str:
        return (
            f"Expected layout: {self.root / self.IMAGE_FOLDER}/000001.jpg ... 202599.jpg "
            "(aligned-and-cropped 178x218 JPEGs). Download 'Align&Cropped Images' "
            f"(img_align_celeba.zip) from the official CelebA page {CELEBA_URL} and unzip it "
            f"into '{self.root}'."
        )

    def _transform(self, img: np.ndarray, index: int) -> np.ndarray:
        square = center_crop(img, min(img.shape[:2]))
        if square.shape[0] != self.resolution:
            square = resize_shorter_side(square, self.resolution)
        return square


class Imagenette(ImageFileDataset):
    """Imagenette (10 ImageNet classes), 320 px version, as in the paper.

    Layout: ``root/{train,val}/<class>/*.JPEG`` (``root`` may also be the folder holding
    ``imagenette2-320/``). Preprocessing as in the paper: train takes a random 178x178
    crop of the full image plus a random horizontal flip; val resizes the shorter side to
    178 and takes the central 178x178. The result is then resized to ``resolution`` if
    that is not 178.

    Randomness (train only):

    * ``seed=None`` (default): each item draws a fresh seed from torch's global RNG.
      DataLoader seeds every worker from the main process RNG, so after
      ``torch.manual_seed(s)`` a run is reproducible for a fixed ``num_workers``, and
      every epoch sees new crops without any extra call.
    * ``seed=int``: the crop of file ``i`` depends only on ``(seed, epoch, i)``, whatever
      the workers; call :meth:`set_epoch` before each epoch (with
      ``persistent_workers=True`` the workers keep the epoch they were started with).
    """

    CROP_SIZE = 178
    SPLITS = ("train", "val")
    ARCHIVE_FOLDER = "imagenette2-320"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        resolution: int = 178,
        seed: int | None = None,
    ):
        if split not in self.SPLITS:
            raise ValueError(f"Imagenette split must be one of {list(self.SPLITS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.seed = seed
        self.epoch = 0
        split_dir = self._find_split_folder()
        self.class_names = sorted(
            entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith(".")
        )
        files, labels = [], []
        for label, class_name in enumerate(self.class_names):
            class_dir = split_dir / class_name
            names = sorted(n for n in os.listdir(class_dir) if is_image_file(n) and not n.startswith("."))
            files += [class_dir / n for n in names]
            labels += [label] * len(names)
        if not files:
            raise DatasetNotFoundError(
                f"Imagenette {split} split: '{split_dir}' holds no class folders with images. "
                f"{self._layout_help()}"
            )
        self.labels: list[int] = labels
        super().__init__(files, resolution)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of this epoch (only used when ``seed`` is an int)."""
        self.epoch = int(epoch)

    def _find_split_folder(self) -> Path:
        for base in (self.root, self.root / self.ARCHIVE_FOLDER):
            if (base / self.split).is_dir():
                return base / self.split
        found = f"'{self.root}' does not exist" if not self.root.is_dir() else f"'{self.root / self.split}' does not exist"
        raise DatasetNotFoundError(f"Imagenette not found: {found}. {self._layout_help()}")

    def _layout_help(self) -> str:
        return (
            f"Expected layout: {self.root}/{{train,val}}/<class>/*.JPEG, i.e. the unpacked "
            f"imagenette2-320 archive ({IMAGENETTE_ARCHIVE_URL}, linked from {IMAGENETTE_URL})."
        )

    def _decode(self, index: int) -> np.ndarray:
        # The train crop is taken from the full image, so only val may decode reduced.
        target = self.CROP_SIZE if self.split == "val" else None
        return load_rgb(self.files[index], target_size=target)

    def _item_rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng([self.seed, self.epoch, index])

    def _transform(self, img: np.ndarray, index: int) -> np.ndarray:
        if self.split == "train":
            rng = self._item_rng(index)
            img = random_crop(img, self.CROP_SIZE, rng)
            if rng.random() < 0.5:
                img = np.ascontiguousarray(img[:, ::-1])
        else:
            img = center_crop(resize_shorter_side(img, self.CROP_SIZE), self.CROP_SIZE)
        if self.resolution != self.CROP_SIZE:
            img = resize_shorter_side(img, self.resolution)
        return img


class ImageFolder(ImageFileDataset):
    """Every image under ``root`` (recursively): resize shorter side, then centre crop.

    Files with the suffixes of :data:`~transinr.data.image_io.IMAGE_EXTENSIONS`
    (case-insensitive) are used; hidden files and folders (names starting with ``.``,
    e.g. macOS ``._photo.jpg`` metadata) are ignored. Symlinked folders are followed once.

    ``split=None`` uses every image. ``split="train"`` / ``"test"`` keeps a deterministic
    part: a file is in the test split when the SHA-1 of its path relative to ``root``
    (``/``-separated) maps below ``test_fraction``; the assignment of a file never changes
    when other files are added or removed.

    Large JPEGs are decoded at reduced scale (``Image.draft``) when their shorter side is
    at least twice ``resolution``, which keeps big photo folders fast.
    """

    SPLITS = ("train", "test")

    def __init__(
        self,
        root: str | Path,
        resolution: int,
        split: str | None = None,
        test_fraction: float = 0.1,
    ):
        if split is not None and split not in self.SPLITS:
            raise ValueError(f"ImageFolder split must be None or one of {list(self.SPLITS)}, got {split!r}")
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
        self.root = Path(root)
        self.split = split
        self.test_fraction = test_fraction
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"Image folder '{self.root}' does not exist. {self._layout_help()}")
        relative = _find_images(self.root)
        if not relative:
            raise DatasetNotFoundError(f"Image folder '{self.root}' holds no images. {self._layout_help()}")
        if split is not None:
            want_test = split == "test"
            relative = [r for r in relative if (_hash_fraction(r) < test_fraction) == want_test]
            if not relative:
                raise DatasetNotFoundError(
                    f"Image folder '{self.root}': the {split} split (test_fraction={test_fraction}) "
                    "is empty; add images or change test_fraction."
                )
        self.relative_paths: list[str] = relative
        super().__init__([self.root / r for r in relative], resolution)

    def _layout_help(self) -> str:
        suffixes = "/".join(ext[1:] for ext in IMAGE_EXTENSIONS)
        return f"Expected a folder holding image files ({suffixes}, any case), searched recursively."

    def _decode(self, index: int) -> np.ndarray:
        return load_rgb(self.files[index], target_size=self.resolution)

    def _transform(self, img: np.ndarray, index: int) -> np.ndarray:
        return center_crop(resize_shorter_side(img, self.resolution), self.resolution)


# ----------------------------------------------------------------------------- helpers

_CELEBA_NAME = re.compile(r"^(\d{6})\.jpe?g$", re.IGNORECASE)


def _celeba_names_by_index(folder: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for name in os.listdir(folder):
        match = _CELEBA_NAME.match(name)
        if match:
            names[int(match.group(1))] = name
    return names


def _find_images(root: Path) -> list[str]:
    """Sorted ``/``-separated paths, relative to ``root``, of the images below it."""
    found: list[str] = []
    visited: set[str] = set()
    def unreadable(error: OSError) -> None:  # os.walk would skip such a folder in silence
        warnings.warn(f"Skipping folder '{error.filename}': it cannot be read ({error.strerror}); "
                      f"its images are left out", SkippedImageWarning, stacklevel=4)

    for directory, subdirs, names in os.walk(root, followlinks=True, onerror=unreadable):
        real = os.path.realpath(directory)
        if real in visited:  # a symlink loop or a folder linked twice
            subdirs[:] = []
            continue
        visited.add(real)
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        base = Path(directory).relative_to(root)
        for name in names:
            if is_image_file(name) and not name.startswith("."):
                found.append((base / name).as_posix())
    return sorted(found)


def _hash_fraction(relative_path: str) -> float:
    """Stable pseudo-random number in ``[0, 1)`` from a path (same on every machine)."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _reason_of(err: Exception) -> str:
    if isinstance(err, CorruptImageError):
        return err.reason
    return f"{type(err).__name__}: {err}"
