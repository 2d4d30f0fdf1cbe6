"""Test-time optimisation (TTO): refine generated NeRF weights on the support views.

The meta-learner's weights are a starting point; a few Adam steps on rays of the
observed (support) views fit the instance more closely, as in the paper (100 steps,
lr 1e-4, 1024 rays per step). Each object's weights are optimised on its own views
only; objects are processed ``objects_per_pass`` at a time to bound memory. The
loss is a sum of per-object losses, so the grouping changes what fits in memory, not
what is optimised (only which random rays each step draws).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .tasks.nvs import render_weights


def views_as_rays(rgb: torch.Tensor, rays_o: torch.Tensor, rays_d: torch.Tensor):
    """Posed views as flat rays: rgb (B, V, 3, H, W), rays (B, V, H, W, 3) →
    origins, directions, colours, each (B, V·H·W, 3)."""
    batch_size = rgb.shape[0]
    colours = rgb.permute(0, 1, 3, 4, 2).reshape(batch_size, -1, 3)
    return rays_o.reshape(batch_size, -1, 3), rays_d.reshape(batch_size, -1, 3), colours


def support_rays(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten an NVS batch's support views into rays (origins, directions, colours)."""
    return views_as_rays(batch["support_rgb"], batch["support_rays_o"], batch["support_rays_d"])


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, N, C), index (B, R) → (B, R, C)."""
    return torch.gather(values, 1, index[..., None].expand(-1, -1, values.shape[-1]))


def random_ray_losses(hyponet, weights: list[torch.Tensor], origins: torch.Tensor, directions: torch.Tensor,
                      colours: torch.Tensor, near, far, n_samples: int, n_rays: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) each object's MSE on ``n_rays`` of its rays drawn at random, rendered with
    stratified samples: one stochastic step's loss (test-time optimisation, Learned Init
    on views). origins, directions, colours: (B, N, 3)."""
    group, n_pixels = origins.shape[:2]
    if generator is None:
        index = torch.randint(n_pixels, (group, n_rays), device=origins.device)
    else:
        index = torch.randint(n_pixels, (group, n_rays), generator=generator).to(origins.device)
    rendered = render_weights(hyponet, weights, _gather(origins, index), _gather(directions, index),
                              near, far, n_samples, stratified=True, chunk=group * n_rays, generator=generator)
    return ((rendered - _gather(colours, index)) ** 2).mean(dim=(1, 2))


@torch.no_grad()
def support_mse(hyponet, weights: list[torch.Tensor], origins: torch.Tensor, directions: torch.Tensor,
                colours: torch.Tensor, near, far, n_samples: int, chunk: int = 4096) -> torch.Tensor:
    """(B,) mean squared error of each object's NeRF on the given rays (evenly spaced samples).

    origins, directions, colours: (B, R, 3); near, far: floats or (B,).
    """
    rendered = render_weights(hyponet, weights, origins, directions, near, far, n_samples, chunk=chunk)
    return ((rendered - colours) ** 2).mean(dim=(1, 2))


def _optimise_group(hyponet, weights, origins, directions, colours, near, far, steps, lr, n_rays,
                    n_samples, generator, bar) -> list[torch.Tensor]:
    params = [w.detach().clone().requires_grad_(True) for w in weights]
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        # Sum over objects of each one's mean error: objects do not share a scale.
        loss = random_ray_losses(hyponet, params, origins, directions, colours, near, far, n_samples,
                                 n_rays, generator).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
    return [p.detach() for p in params]


def optimise_on_support_views(hyponet, weights: list[torch.Tensor], origins: torch.Tensor,
                              directions: torch.Tensor, colours: torch.Tensor, near, far, *, steps: int = 100,
                              lr: float = 1e-4, n_rays: int = 1024, n_samples: int = 128,
                              objects_per_pass: int = 4, seed: int = 0,
                              progress: bool | None = None) -> list[torch.Tensor]:
    """Adam on the support rays, starting from generated weights.

    Args:
        hyponet: the NeRF recipe (``model.hyponet``).
        weights: per layer (B, in+1, out), e.g. ``model(...)``; left untouched.
        origins, directions, colours: (B, N, 3) support rays (see :func:`support_rays`).
        near, far: floats or (B,) tensors.
        steps, lr, n_rays: Adam steps, step size and rays drawn per object per step.
        n_samples: points per ray (stratified, as in training).
        objects_per_pass: objects optimised together (a memory bound, not a setting of the method).
        seed: seeds the ray draws, so a TTO evaluation is reproducible.
        progress: show a progress bar (None: only on a terminal).
    Returns:
        optimised weights, per layer (B, in+1, out), detached.
    """
    if steps <= 0:
        return [w.detach() for w in weights]
    generator = torch.Generator().manual_seed(seed)
    batch = weights[0].shape[0]
    near_t = torch.as_tensor(near, dtype=torch.float32, device=origins.device).expand(batch)
    far_t = torch.as_tensor(far, dtype=torch.float32, device=origins.device).expand(batch)
    groups = range(0, batch, max(1, objects_per_pass))
    results: list[list[torch.Tensor]] = []
    with torch.enable_grad(), tqdm(total=steps * len(groups), desc="test-time optimisation", unit="step",
                                   leave=False, disable=None if progress is None else not progress) as bar:
        for start in groups:
            part = slice(start, start + objects_per_pass)
            results.append(_optimise_group(hyponet, [w[part] for w in weights], origins[part],
                                           directions[part], colours[part], near_t[part], far_t[part],
                                           steps, lr, n_rays, n_samples, generator, bar))
    return [torch.cat(layer) for layer in zip(*results)]
