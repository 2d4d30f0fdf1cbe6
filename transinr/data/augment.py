"""A training stream that does not run out: fresh variants of each training image every epoch.

The emoji set has 3.4k training images; a meta-learner that sees them many times
memorises them. ``AugmentedImages`` wraps the training split and draws, for item
``index`` of epoch ``epoch``, a new image from the source artwork:

* ``crop``: a random resized crop (area ``crop_scale`` … 1 of the source, aspect
  ratio 3/4 … 4/3) cut from the source resolution (``source``: the shipped 64 px
  array, or the 128 px cache) and resampled to the training resolution;
* ``flip``: a left-right mirror with probability 1/2;
* ``hue``: a rotation of the colours around the grey axis (white and greys stay as
  they are) by up to ``hue`` of a full turn, and a saturation factor in 0.7 … 1.3;
* ``composite``: with this probability the signal is a white canvas holding 2 …
  ``composite_max`` emoji (the item's own and random others), each scaled to 35–70 %
  of the canvas and placed at random. They are blended by multiplication: emoji are
  drawn on white, and white is the identity of a product, so the background of one
  emoji never hides another and overlaps darken as inks do.

``extra_artwork`` adds further artwork sets (Twemoji: the training-split emoji drawn by
another hand) as items after the plain training images: the stream grows by their
number, and every augmentation above (including the choice of composite partners)
draws from the Noto and extra artwork alike. With no augmentation switched on, an extra
item is its image resampled to the training resolution.

Every random choice comes from a generator seeded by ``(seed, epoch, index)`` alone,
so an item is the same whichever process, worker or resumed run draws it, and a
resumed run sees exactly the images of an uninterrupted one. The held-out split is
never augmented.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

# Config overrides that turn every augmentation off: the emoji configs train on the
# augmented stream, and a check that needs the plain images says so with these.
NO_AUGMENTATION = ["data.augment.crop=false", "data.augment.flip=false", "data.augment.hue=0",
                   "data.augment.composite=0"]
CROP_ASPECT = (3 / 4, 4 / 3)
SATURATION = (0.7, 1.3)
COMPOSITE_SCALE = (0.35, 0.7)
_GREY_AXIS = torch.ones(3) / math.sqrt(3.0)


def augment_enabled(augment) -> bool:
    """Whether an ``AugmentConfig`` changes anything."""
    return bool(augment.crop or augment.flip or augment.hue > 0 or augment.composite > 0
                or augment.extra_artwork)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))


def hue_rotation(angle: float) -> torch.Tensor:
    """(3, 3) rotation of RGB space by ``angle`` radians around the grey axis (Rodrigues)."""
    k = _GREY_AXIS
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return (math.cos(angle) * torch.eye(3) + math.sin(angle) * cross
            + (1 - math.cos(angle)) * torch.outer(k, k))


def recolour(image: torch.Tensor, angle: float, saturation: float) -> torch.Tensor:
    """Rotate the hue and scale the saturation of (3, H, W) in [0, 1]; greys are fixed points."""
    rotated = torch.einsum("ij,jhw->ihw", hue_rotation(angle), image)
    grey = rotated.mean(dim=0, keepdim=True)
    return (grey + saturation * (rotated - grey)).clamp(0, 1)


def random_crop_box(rng: np.random.Generator, size: int, min_area: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop of a ``size`` square image."""
    area = rng.uniform(min_area, 1.0) * size * size
    aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
    width = min(size, max(1, round(math.sqrt(area * aspect))))
    height = min(size, max(1, round(math.sqrt(area / aspect))))
    top = int(rng.integers(0, size - height + 1))
    left = int(rng.integers(0, size - width + 1))
    return top, left, height, width


def resample(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, h, w) → (3, height, width), antialiased when shrinking."""
    if image.shape[-2:] == (height, width):
        return image
    return F.interpolate(image.unsqueeze(0), size=(height, width), mode="bilinear",
                         align_corners=False, antialias=True)[0].clamp(0, 1)


def _check_artwork(images: torch.Tensor, what: str) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must be uint8 (N, 3, S, S); got {images.dtype} {tuple(images.shape)}")


class AugmentedImages(Dataset):
    """Training images, a new variant of each every epoch.

    source: (N, 3, S, S) uint8, the artwork augmentations are cut from.
    plain: the un-augmented training set at the training resolution (same N, same
      order); items that no augmentation touches come from it unchanged, and
      evaluations of training PSNR use it.
    extra: (M, 3, S', S') uint8 further artwork (``data.augment.extra_artwork``), or
      None; items N … N + M - 1 of the stream. It never enters ``plain``.
    Items are float32 (3, R, R) in [0, 1], R = ``plain``'s resolution; N + M of them.
    """

    def __init__(self, source: torch.Tensor, plain: Dataset, augment, seed: int,
                 extra: torch.Tensor | None = None):
        _check_artwork(source, "augmentation source")
        if extra is not None:
            _check_artwork(extra, "data.augment.extra_artwork images")
        if len(source) != len(plain):
            raise ValueError(f"augmentation source has {len(source)} images, the training set {len(plain)}")
        if not 0 < augment.crop_scale <= 1:
            raise ValueError(f"data.augment.crop_scale must be in (0, 1]; got {augment.crop_scale}")
        if not 0 <= augment.composite <= 1:
            raise ValueError(f"data.augment.composite is a probability in [0, 1]; got {augment.composite}")
        if augment.composite > 0 and augment.composite_max < 2:
            raise ValueError(f"data.augment.composite_max must be ≥ 2; got {augment.composite_max}")
        if not 0 <= augment.hue <= 0.5:
            raise ValueError(f"data.augment.hue is the largest hue rotation as a fraction of a turn, "
                             f"in [0, 0.5] (0.5: any hue); got {augment.hue}")
        self.source, self.plain, self.augment, self.seed = source, plain, augment, seed
        self.extra = extra if extra is not None else source[:0]
        self.resolution = int(plain[0].shape[-1])
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The training loop calls this before each epoch: items change with it."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plain) + len(self.extra)

    def _source_image(self, index: int) -> torch.Tensor:
        """The artwork of item ``index`` at its source resolution: float32 (3, S, S) in [0, 1]."""
        n = len(self.source)
        image = self.source[index] if index < n else self.extra[index - n]
        return image.float().div_(255.0)

    def _artwork(self, index: int, rng: np.random.Generator, size: int) -> torch.Tensor:
        """Image ``index``, cropped (if on) and resampled to ``size``, flipped (if on)."""
        if self.augment.crop:
            image = self._source_image(index)
            top, left, height, width = random_crop_box(rng, image.shape[-1], self.augment.crop_scale)
            image = resample(image[:, top:top + height, left:left + width], size, size)
        elif size == self.resolution and index < len(self.plain):
            image = self.plain[index]  # exactly the un-augmented pixels
        else:
            image = resample(self._source_image(index), size, size)
        if self.augment.flip and rng.random() < 0.5:
            image = image.flip(-1)
        return image

    def _composite(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        size = self.resolution
        canvas = torch.ones(3, size, size)
        count = int(rng.integers(2, self.augment.composite_max + 1))
        others = rng.integers(0, len(self), count - 1).tolist()
        for member in [index] + others:
            side = max(2, round(rng.uniform(*COMPOSITE_SCALE) * size))
            top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
            canvas[:, top:top + side, left:left + side] *= self._artwork(member, rng, side)
        return canvas

    def __getitem__(self, index: int) -> torch.Tensor:
        """Item ``index`` of the current epoch: float32 (3, R, R) in [0, 1]."""
        rng = item_rng(self.seed, self.epoch, index)
        if self.augment.composite > 0 and rng.random() < self.augment.composite:
            image = self._composite(index, rng)
        else:
            image = self._artwork(index, rng, self.resolution)
        if self.augment.hue > 0:
            angle = rng.uniform(-1.0, 1.0) * self.augment.hue * 2 * math.pi
            image = recolour(image, angle, rng.uniform(*SATURATION))
        return image.contiguous()

    def __repr__(self) -> str:
        return f"AugmentedImages(n={len(self)}, resolution={self.resolution}, epoch={self.epoch})"
