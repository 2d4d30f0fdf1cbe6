"""Tiny configs and data shared by the tests."""

from __future__ import annotations

import torch

from transinr.config import Config


def tiny_image_config(**train) -> Config:
    config = Config(name="tiny")
    m = config.model
    m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim = 32, 2, 2, 16, 64
    m.patch_size, m.padding, m.n_groups = 8, 0, 4
    m.hyponet.depth, m.hyponet.width, m.hyponet.pe_dim, m.hyponet.pe_sigma = 3, 16, 16, 8.0
    config.data.resolution = 32
    config.train.batch_size = 8
    config.train.lr = 1e-3
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) smooth random images in [0, 1] — learnable by a tiny INR."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
