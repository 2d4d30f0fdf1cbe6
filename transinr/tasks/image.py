"""2D image regression: an image in, an INR of that image out."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..coords import make_coord_grid
from ..data import build_dataset
from ..distributed import unwrap
from ..metrics import mse_to_psnr, psnr_per_item


def render_image(hyponet, weights: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Query B INRs on an (height × width) pixel grid → (B, 3, height, width).

    Any size works: the INR is a continuous function of the coordinates.
    """
    coords = make_coord_grid(height, width, device=weights[0].device, dtype=weights[0].dtype)
    # One grid for all B INRs: its Fourier features are computed once.
    out = hyponet(coords.unsqueeze(0), weights)  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


class ImageRegression:
    """Signals are images (B, 3, H, W) in [0, 1]; the loss is the MSE over all pixels."""

    kind = "image"

    def __init__(self, config):
        self.config = config

    def datasets(self):
        return build_dataset(self.config, "train"), build_dataset(self.config, "test")

    def image_size(self, dataset) -> int:
        return int(dataset[0].shape[-1])

    def batch_size(self, item_count: int) -> int:
        return item_count

    def to_device(self, batch, device):
        return batch.to(device, non_blocking=True)

    def predict(self, model, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """images (B, 3, H, W) → the generated INRs rendered at ``size`` (default H)."""
        weights = model(images)
        size = size or images.shape[-1]
        return render_image(unwrap(model).hyponet, weights, size, size)

    def training_loss(self, model, images: torch.Tensor, epoch: int):
        """→ (scalar loss, float PSNR of the batch)."""
        prediction = self.predict(model, images)
        loss = F.mse_loss(prediction, images)
        return loss, float(mse_to_psnr(loss.detach()))

    @torch.no_grad()
    def psnr(self, model, images: torch.Tensor) -> torch.Tensor:
        """(B,) held-out PSNR of each image's generated INR."""
        return psnr_per_item(self.predict(model, images), images)
