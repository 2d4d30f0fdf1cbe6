"""Reconstruction metrics for signals with values in [0, 1]."""

from __future__ import annotations

import torch


def mse_to_psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for values in [0, 1]: −10 log10(MSE)."""
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def psnr_per_item(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """prediction, target: (B, ...) → (B,) PSNR of each item, prediction clipped to [0, 1]."""
    error = (prediction.clamp(0, 1) - target) ** 2
    return mse_to_psnr(error.flatten(1).mean(dim=1))
