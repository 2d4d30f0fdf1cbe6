"""What the notebooks' widgets do, as plain functions that return arrays or figures.

ipywidgets swallows exceptions raised inside callbacks, so every callback here is a
library function with its own tests; the notebooks only wire sliders to them.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from . import analysis
from .tasks.image import render_image


def smoke_mode() -> bool:
    """``TRANSINR_SMOKE=1`` (set in CI) shrinks every loop in the notebooks."""
    return os.environ.get("TRANSINR_SMOKE", "0") not in ("", "0", "false", "False")


def image_to_numpy(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → (H, W, 3) float array in [0, 1]."""
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def reconstruct(model, image: torch.Tensor, scale: int = 1) -> dict:
    """One image through Trans-INR: the generated INR rendered at the input size and at
    ``scale``× it, and its PSNR. image: (3, H, W)."""
    from .metrics import psnr_per_item

    model.eval()
    images = image.unsqueeze(0)
    weights = model(images)
    size = image.shape[-1]
    native = render_image(model.hyponet, weights, size, size)
    upscaled = render_image(model.hyponet, weights, size * scale, size * scale)
    return {"input": image_to_numpy(image), "generated": image_to_numpy(native[0]),
            "upscaled": image_to_numpy(upscaled[0]),
            "psnr": psnr_per_item(native, images).item()}


def image_from_bytes(data: bytes, resolution: int) -> torch.Tensor:
    """An uploaded file (any format Pillow reads) → (3, R, R) centre-cropped, on white."""
    import tempfile
    from pathlib import Path

    from .data.image_io import center_crop, load_rgb, resize_shorter_side, to_tensor

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        pixels = load_rgb(path)
    return to_tensor(center_crop(resize_shorter_side(pixels, resolution), resolution))


@torch.no_grad()
def attention_overlay(model, image: torch.Tensor, inr_layer: int, group: int | None = None,
                      transformer_layer: int = -1, head: int | None = None) -> np.ndarray:
    """Attention of one weight token (or the mean over a layer's groups / heads) over an
    image, upsampled to the image's pixels: (H, W) array summing to the token's total
    attention on data tokens."""
    result = analysis.weight_token_attention(model, image.unsqueeze(0))
    maps = result.for_layer(inr_layer)[0, transformer_layer]  # (heads, g, gh, gw)
    maps = maps.mean(0) if head is None else maps[head]
    maps = maps.mean(0) if group is None else maps[group]
    return analysis.attention_on_pixels(model.tokenizer, maps.unsqueeze(0))[0].cpu().numpy()
