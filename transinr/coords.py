"""Pixel-centre coordinate grids in [-1, 1], the input domain of image INRs."""

from __future__ import annotations

import torch


def make_coord_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) grid of (row, column) pixel centres in [-1, 1].

    The INR is continuous, so the same function queried on a finer grid renders
    the signal at a higher resolution.
    """
    rows = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height * 2 - 1
    cols = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width * 2 - 1
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)
