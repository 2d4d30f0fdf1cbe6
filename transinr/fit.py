"""Fitting from scratch: the baseline with no meta-learning at all.

Each signal gets its own copy of the hyponet, initialised at random (as
``nn.Linear`` does) and fitted by Adam to that signal alone. A batch of B signals is
fitted at once; as Adam works element by element and the loss is a *sum* of
per-signal losses, this is exactly B independent fits, only faster.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from tqdm.auto import tqdm

from .metrics import psnr_per_item
from .models.learned_init import image_reconstruction_losses
from .tasks.image import render_image


class Stopwatch:
    """Accumulates wall time over start/stop spans, waiting for the GPU at each edge.

    Lets a measurement exclude what is not part of the method (e.g. scoring PSNR
    after every step).
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.elapsed = 0.0
        self._started: float | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._started = time.perf_counter()

    def stop(self) -> float:
        self._sync()
        self.elapsed += time.perf_counter() - self._started
        self._started = None
        return self.elapsed


def random_hyponet_weights(layer_shapes, batch: int, generator: torch.Generator | None = None,
                           device=None, dtype=torch.float32) -> list[torch.Tensor]:
    """B independent ``nn.Linear``-style initialisations, per layer (B, in+1, out)."""
    weights = []
    for fan_in_plus_bias, fan_out in layer_shapes:
        bound = 1.0 / (fan_in_plus_bias - 1) ** 0.5
        w = torch.rand(batch, fan_in_plus_bias, fan_out, generator=generator, dtype=dtype)
        weights.append(((w * 2 - 1) * bound).to(device))
    return weights


@torch.no_grad()
def image_psnr(hyponet: nn.Module, weights: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR of each INR against its image, on the image's own grid."""
    prediction = render_image(hyponet, weights, images.shape[-2], images.shape[-1])
    return psnr_per_item(prediction, images)


def fit_from_scratch(hyponet: nn.Module, images: torch.Tensor, steps: int, lr: float = 1e-3,
                     record_every: int = 10, seed: int = 0, progress: bool = False,
                     initial_weights: list[torch.Tensor] | None = None) -> dict:
    """Fit one randomly initialised hyponet per image by Adam.

    images: (B, 3, H, W) in [0, 1]. PSNR is recorded at step 0 and after every
    ``record_every`` steps (and after the last one). ``initial_weights`` (per layer
    (B, in+1, out), e.g. the weights a meta-learner generated) start the fit instead of
    a random init; they are copied, not changed.

    Returns a dict:
      ``steps``: (R,) the step of each record;
      ``seconds``: (R,) optimisation wall time of the whole batch up to that record
        (scoring excluded; divide by B for the time per signal);
      ``psnr``: (R, B) per-image PSNR at each record, as nested lists;
      ``psnr_mean``: (R,) the batch mean;
      ``weights``: the fitted weights, per layer (B, in+1, out).
    """
    if steps < 0 or record_every < 1:
        raise ValueError(f"need steps ≥ 0 and record_every ≥ 1, got {steps} and {record_every}")
    if initial_weights is None:
        generator = torch.Generator().manual_seed(seed)
        initial_weights = random_hyponet_weights(hyponet.layer_shapes, images.shape[0], generator,
                                                 images.device, images.dtype)
    weights = [w.detach().clone().requires_grad_(True) for w in initial_weights]
    optimizer = torch.optim.Adam(weights, lr=lr)
    loss_fn = image_reconstruction_losses(hyponet, images)
    clock = Stopwatch(images.device)
    history = {"steps": [], "seconds": [], "psnr": [], "psnr_mean": []}

    def record(step: int) -> None:
        psnr = image_psnr(hyponet, weights, images)
        history["steps"].append(step)
        history["seconds"].append(clock.elapsed)
        history["psnr"].append(psnr.tolist())
        history["psnr_mean"].append(psnr.mean().item())

    record(0)
    with torch.enable_grad():
        for step in tqdm(range(1, steps + 1), disable=not progress, desc="fit from scratch", leave=False):
            clock.start()
            loss = loss_fn(weights).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            clock.stop()
            if step % record_every == 0 or step == steps:
                record(step)
    history["weights"] = [w.detach() for w in weights]
    return history
