"""An out-of-distribution image set that ships as code: procedural textures.

Images of another kind than emoji, for scoring how a meta-learner does on signals
it has never seen the like of. Each image is a continuous function of the pixel
position drawn from one of six families — stripes, checkerboards, rings, smooth
noise (a sum of random plane waves), dots on a rotated lattice, warped waves — at
1 to 6 cycles per image side, coloured with a random palette of two or three colours.
Image ``i`` depends only on ``i``: its parameters come from a generator seeded with
``(TEXTURE_SEED, i)``, so the set is the same on every machine and at every
resolution (pixels are 4 x 4 supersampled, or less for large images, and box-averaged).

Nothing is downloaded or stored: the textures are made by this module and are
covered by the project's licence (MIT, see LICENSE).
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
from torch.utils.data import Dataset

TEXTURE_SEED = 20260
DEFAULT_COUNT = 256
FAMILIES = ("stripes", "checker", "rings", "noise", "dots", "waves")
CYCLES = (1.0, 6.0)  # spatial frequencies, cycles per image side


def _palette(rng: np.random.Generator) -> np.ndarray:
    """(K, 3) colours, K = 2 or 3, of well-separated hues and lightness."""
    count = int(rng.integers(2, 4))
    hue = rng.random()
    colours = []
    for k in range(count):
        h = (hue + k / count + rng.uniform(-0.08, 0.08)) % 1.0
        colours.append(colorsys.hsv_to_rgb(h, rng.uniform(0.3, 1.0), rng.uniform(0.25, 1.0)))
    return np.array(colours)


def _rotated(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return c * x + s * y, -s * x + c * y


def _field(family: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A scalar field in [0, 1] over coordinates x, y in [0, 1)."""
    cycles = rng.uniform(*CYCLES)
    u, v = _rotated(x - 0.5, y - 0.5, rng.uniform(0, math.pi))
    phase = rng.uniform(0, 2 * math.pi)
    sharp = rng.uniform(1.0, 8.0)  # how hard the edges are: tanh of a sine
    if family == "stripes":
        wave = np.sin(2 * math.pi * cycles * u + phase)
    elif family == "checker":
        wave = np.sin(2 * math.pi * cycles * u + phase) * np.sin(2 * math.pi * cycles * v)
        sharp *= 2
    elif family == "rings":
        cx, cy = rng.uniform(-0.3, 0.3, 2)
        wave = np.sin(2 * math.pi * cycles * np.hypot(u - cx, v - cy) + phase)
    elif family == "noise":
        wave = np.zeros_like(u)
        for _ in range(6):
            fx, fy = rng.normal(0, cycles / 2, 2)
            wave += np.sin(2 * math.pi * (fx * x + fy * y) + rng.uniform(0, 2 * math.pi))
        wave /= 6 ** 0.5
        sharp /= 4
    elif family == "dots":
        radius = rng.uniform(0.15, 0.4)
        cu = (u * cycles + rng.random()) % 1.0 - 0.5
        cv = (v * cycles + rng.random()) % 1.0 - 0.5
        wave = radius - np.hypot(cu, cv)
        sharp *= 10
    elif family == "waves":
        warp = rng.uniform(0.05, 0.25)
        wave = np.sin(2 * math.pi * cycles * (u + warp * np.sin(2 * math.pi * rng.uniform(1, 3) * v)) + phase)
    else:
        raise ValueError(f"unknown texture family {family!r}; known: {', '.join(FAMILIES)}")
    return 0.5 + 0.5 * np.tanh(sharp * wave) / math.tanh(sharp)


def texture(index: int, resolution: int) -> np.ndarray:
    """Texture ``index`` as float32 (3, resolution, resolution) in [0, 1]."""
    rng = np.random.default_rng([TEXTURE_SEED, index])
    family = FAMILIES[index % len(FAMILIES)]
    supersample = max(1, min(4, 256 // resolution))
    n = resolution * supersample
    grid = (np.arange(n) + 0.5) / n
    y, x = np.meshgrid(grid, grid, indexing="ij")
    value = _field(family, x, y, rng).clip(0, 1)
    colours = _palette(rng)
    # The field runs through the palette: 0 → first colour, 1 → last, linearly between.
    position = value * (len(colours) - 1)
    low = np.minimum(position.astype(int), len(colours) - 2)
    t = (position - low)[..., None]
    image = (1 - t) * colours[low] + t * colours[low + 1]  # (n, n, 3)
    image = image.reshape(resolution, supersample, resolution, supersample, 3).mean(axis=(1, 3))
    return image.transpose(2, 0, 1).astype(np.float32)


class TextureDataset(Dataset):
    """``count`` procedural textures as float32 ``(3, R, R)`` in ``[0, 1]``, made once at construction."""

    def __init__(self, resolution: int = 32, count: int = DEFAULT_COUNT):
        if resolution < 1 or count < 1:
            raise ValueError(f"textures need a positive resolution and count; got {resolution}, {count}")
        self.resolution, self.split = resolution, "ood"
        self._images = torch.from_numpy(np.stack([texture(i, resolution) for i in range(count)]))
        self.families = [FAMILIES[i % len(FAMILIES)] for i in range(count)]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._images[index].clone()

    def __repr__(self) -> str:
        return f"TextureDataset(resolution={self.resolution}, n={len(self)})"
