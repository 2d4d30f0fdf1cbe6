"""Data tokenizers: turn observations into a sequence of ``dim``-wide tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hyponets import FourierFeatures


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Split images into non-overlapping square patches.

    x: (B, C, H, W) with H and W divisible by ``patch_size``.
    Returns (B, (H/p)·(W/p), p·p·C), patches in row-major order, each flattened as
    (row, column, channel).
    """
    batch, channels, height, width = x.shape
    p = patch_size
    x = x.view(batch, channels, height // p, p, width // p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(batch, (height // p) * (width // p), p * p * channels)


class ImageTokenizer(nn.Module):
    """Image → patch tokens, as in ViT but with an optional zero border.

    The border lets sizes that are not a multiple of the patch split evenly
    (178 px + 1 px on each side = 20 patches of 9 px). ``position_init_std`` scales the
    initial positional embedding (N(0, 1) in the paper); 0 builds none at all.
    """

    def __init__(self, image_size: int, patch_size: int, dim: int, padding: int = 0, channels: int = 3,
                 position_init_std: float = 1.0):
        super().__init__()
        padded = image_size + 2 * padding
        if padded % patch_size:
            raise ValueError(
                f"image size {image_size} + 2×padding {padding} = {padded} is not divisible "
                f"by patch_size {patch_size}; choose a padding that makes it so"
            )
        self.patch_size = patch_size
        self.padding = padding
        self.grid_shape = (padded // patch_size, padded // patch_size)
        self.n_tokens = self.grid_shape[0] * self.grid_shape[1]
        self.project = nn.Linear(patch_size * patch_size * channels, dim)
        self.position = None
        if position_init_std > 0:
            self.position = nn.Parameter(torch.randn(1, self.n_tokens, dim) * position_init_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, C, H, W) → tokens (B, n_tokens, dim)."""
        if self.padding:
            images = F.pad(images, [self.padding] * 4)
        tokens = self.project(patchify(images, self.patch_size))
        return tokens if self.position is None else tokens + self.position


class ViewsTokenizer(nn.Module):
    """Posed views → tokens: per pixel RGB ‖ ray origin ‖ ray direction (9 channels).

    Each view is patchified on its own; the tokens of all views are concatenated,
    so a model trained on one view can be given two. As in the paper there is no
    positional embedding: each pixel's ray channels already say where it looks from.
    ``position_init_std > 0`` adds one learned embedding shared by every view.

    ``ray_frequencies = F > 0`` appends cos / sin(2^k · x), k = 0 … F-1, of each of the six
    ray channels (12·F more channels a pixel). The paper feeds the raw rays, so a token's
    first-layer key and value depend on where it looks only linearly; the encoding lets
    attention pick out one view's tokens that look at one part of the object, which a model
    must do to add what its second view shows rather than average the two views. On the
    embedded chairs at 128,000 views it did the opposite: the model never read its input
    (README, "Why the two views still hardly combine"), so every config leaves it at 0.
    """

    def __init__(self, image_size: int, patch_size: int, dim: int, padding: int = 0,
                 position_init_std: float = 0.0, ray_frequencies: int = 0):
        super().__init__()
        # The NeRF's own encoding, without π: frequencies 2^0 … 2^(F-1).
        self.ray_encoding = (FourierFeatures(6, 12 * ray_frequencies, 2.0 ** (ray_frequencies - 1), times_pi=False)
                             if ray_frequencies else None)
        channels = 9 + 12 * ray_frequencies
        self.image = ImageTokenizer(image_size, patch_size, dim, padding, channels=channels,
                                    position_init_std=position_init_std)
        self.grid_shape = self.image.grid_shape
        self.tokens_per_view = self.image.n_tokens

    def encode_rays(self, rays: torch.Tensor) -> torch.Tensor:
        """rays (..., 6) → (..., 6 + 12·F): the raw channels, then cos and sin of each at
        every frequency."""
        if self.ray_encoding is None:
            return rays
        return torch.cat([rays, self.ray_encoding(rays)], dim=-1)

    def forward(self, rgb: torch.Tensor, rays_o: torch.Tensor, rays_d: torch.Tensor) -> torch.Tensor:
        """rgb (B, V, 3, H, W), rays_o / rays_d (B, V, H, W, 3) → tokens (B, V·n, dim)."""
        batch, n_views = rgb.shape[:2]
        rays = self.encode_rays(torch.cat([rays_o, rays_d], dim=-1)).permute(0, 1, 4, 2, 3)  # (B, V, 6+12F, H, W)
        pixels = torch.cat([rgb, rays], dim=2).flatten(0, 1)  # (B·V, 9+12F, H, W)
        tokens = self.image(pixels)  # (B·V, n, dim)
        return tokens.view(batch, n_views * self.tokens_per_view, -1)
