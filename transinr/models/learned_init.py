"""Learned Init (Tancik et al., CVPR 2021): gradient-based meta-learning of an INR.

A meta-learned initialisation θ_0 of the hyponet is adapted to each signal by K
plain SGD steps on that signal's observations,

    θ_{i+1} = θ_i − α_l ∇_θ L(θ_i; O),

and the adapted θ_K is the signal's INR. The outer loop (the ordinary training
loop) then scores θ_K on the signal and updates θ_0 (and the step sizes α_l).
The step size is one number per layer (Tancik et al.), or one per weight
(Meta-SGD, Li et al. 2017: α is a tensor shaped like θ and the step is α ⊙ ∇θ),
which lets the meta-learner scale each weight's gradient on its own.

First-order (the default) treats the inner gradients as constants, so the outer
gradient reaches θ_0 through the identity path only (FOMAML): cheap, and what a
CPU can afford. Second-order backpropagates through the inner gradients (MAML).

The inner loop is a reusable function, :func:`adapt`: it only needs a loss closure
``loss_fn(weights) → (B,)``, so view synthesis can pass a ray-rendering loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..coords import make_coord_grid
from .weight_tokens import linear_init

LossFn = Callable[[list[torch.Tensor]], torch.Tensor]


def image_reconstruction_losses(hyponet: nn.Module, images: torch.Tensor) -> LossFn:
    """A closure giving each image's MSE under the INRs it is handed.

    images: (B, C, H, W) in [0, 1]. The closure maps weights (per layer
    (B, in+1, out)) to (B,) per-image mean squared errors over every pixel.
    """
    batch, _, height, width = images.shape
    # One grid shared by all B INRs (the hyponet encodes it once).
    coords = make_coord_grid(height, width, device=images.device, dtype=images.dtype).unsqueeze(0)
    target = images.permute(0, 2, 3, 1)  # (B, H, W, C), the hyponet's layout

    def losses(weights: list[torch.Tensor]) -> torch.Tensor:
        return (hyponet(coords, weights) - target).pow(2).flatten(1).mean(dim=1)

    return losses


def views_reconstruction_losses(near: float, far: float, n_samples: int, n_rays: int):
    """A loss builder for posed views (view synthesis), for :class:`LearnedInit`.

    Returns ``build(hyponet, rgb, rays_o, rays_d)`` — the observations as the views
    tokenizer takes them, rgb (B, V, 3, H, W) and rays (B, V, H, W, 3) — whose closure
    volume-renders ``n_rays`` random rays of each object's observed views through its
    NeRF (stratified samples) and gives (B,) per-object MSEs. Every call draws new
    rays, so each inner step is a stochastic gradient step, as in test-time optimisation.
    """

    def build(hyponet: nn.Module, rgb: torch.Tensor, rays_o: torch.Tensor, rays_d: torch.Tensor) -> LossFn:
        from ..tto import random_ray_losses, views_as_rays  # the renderer is only needed for views

        origins, directions, colours = views_as_rays(rgb, rays_o, rays_d)

        def losses(weights: list[torch.Tensor]) -> torch.Tensor:
            return random_ray_losses(hyponet, weights, origins, directions, colours, near, far,
                                     n_samples, n_rays)

        return losses

    return build


def adapt(weights: list[torch.Tensor], loss_fn: LossFn, step_sizes: Sequence, steps: int,
          second_order: bool = False,
          on_step: Callable[[int, list[torch.Tensor]], None] | None = None) -> list[torch.Tensor]:
    """K steps of SGD on per-signal losses; returns the adapted weights.

    weights: per layer (B, in+1, out), one INR per signal.
    loss_fn: weights → (B,) per-signal losses. Their *sum* is differentiated, so each
      signal's gradient is that of its own loss, whatever the batch size.
    step_sizes: one step size per layer: a float, a 0-dim tensor, or a tensor
      broadcastable to that layer's weights (per-weight step sizes), learnable or not.
    second_order: keep the inner gradients in the graph (``create_graph=True``); else
      they are constants (first-order). Ignored where autograd is off (evaluation).
    on_step: called as ``on_step(i, weights_i)`` after every step i = 1 … steps.

    Works under ``torch.no_grad()`` too: the inner gradients are taken inside
    ``torch.enable_grad()``, and the update itself follows the caller's grad mode.
    """
    if len(step_sizes) != len(weights):
        raise ValueError(f"adapt: {len(step_sizes)} step sizes for {len(weights)} weight tensors")
    create_graph = second_order and torch.is_grad_enabled()
    for step in range(1, steps + 1):
        with torch.enable_grad():
            if create_graph:
                tracked = [w if w.requires_grad else w.detach().requires_grad_(True) for w in weights]
            else:
                # First-order: the inner gradient is a constant, so its graph need not
                # reach θ_0 at all — cut it here and keep the inner pass cheap.
                tracked = [w.detach().requires_grad_(True) for w in weights]
            losses = loss_fn(tracked)
            if losses.dim() != 1:
                raise ValueError(f"adapt: loss_fn must return per-signal losses (B,), got {tuple(losses.shape)}")
            grads = torch.autograd.grad(losses.sum(), tracked, create_graph=create_graph)
        weights = [w - alpha * g for w, alpha, g in zip(weights, step_sizes, grads)]
        if on_step is not None:
            on_step(step, weights)
    return weights


class LearnedInit(nn.Module):
    """A meta-learned θ_0 of ``hyponet``, adapted per signal by K SGD steps.

    ``forward(*observations)`` returns the adapted weights, per layer (B, in+1, out),
    like every meta-learner of the kit. It runs ``inner_steps`` steps in training
    mode and ``test_inner_steps`` in eval mode (``steps=`` overrides both).

    step_sizes_per: "layer" (one learned or fixed step size per hyponet layer) or
      "parameter" (Meta-SGD: a learned step size for every weight, all starting at
      ``inner_lr``).
    loss_builder: ``(hyponet, *observations) → loss closure`` (see :func:`adapt`);
      the default fits images on their own pixel grid.
    """

    def __init__(self, hyponet: nn.Module, inner_steps: int = 2, test_inner_steps: int | None = None,
                 inner_lr: float = 0.1, learn_inner_lr: bool = True, second_order: bool = False,
                 loss_builder: Callable[..., LossFn] = image_reconstruction_losses,
                 step_sizes_per: str = "layer"):
        super().__init__()
        if inner_steps < 0 or (test_inner_steps is not None and test_inner_steps < 0):
            raise ValueError(f"inner steps must be ≥ 0, got inner_steps={inner_steps}, "
                             f"test_inner_steps={test_inner_steps}")
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be positive, got {inner_lr}")
        self.hyponet = hyponet
        self.inner_steps = inner_steps
        self.test_inner_steps = inner_steps if test_inner_steps is None else test_inner_steps
        self.second_order = second_order
        self.loss_builder = loss_builder
        self.init_weights = nn.ParameterList(
            nn.Parameter(linear_init(fan_in - 1, fan_out)) for fan_in, fan_out in hyponet.layer_shapes
        )
        # Log-parametrised so a learned step size stays positive.
        if step_sizes_per == "parameter":
            if not learn_inner_lr:
                raise ValueError("per-parameter inner step sizes are learned (Meta-SGD); a fixed step "
                                 "size is the same for every weight: use inner_lr_per: layer")
            self.log_step_sizes = nn.ParameterList(
                nn.Parameter(torch.full_like(w, math.log(inner_lr))) for w in self.init_weights)
        elif step_sizes_per == "layer":
            log_steps = torch.full((len(hyponet.layer_shapes),), math.log(inner_lr))
            if learn_inner_lr:
                self.log_step_sizes = nn.Parameter(log_steps)
            else:
                self.register_buffer("log_step_sizes", log_steps)
        else:
            raise ValueError(f"inner step sizes are per 'layer' or per 'parameter', got {step_sizes_per!r}")
        self.step_sizes_per = step_sizes_per

    def step_sizes(self) -> list[torch.Tensor]:
        """The inner SGD step size of each hyponet layer: 0-dim tensors, or tensors
        shaped like the layer's weights (in+1, out) when they are per parameter."""
        if self.step_sizes_per == "parameter":
            return [log_step.exp() for log_step in self.log_step_sizes]
        return list(self.log_step_sizes.exp().unbind(0))

    def initial_weights(self, batch: int) -> list[torch.Tensor]:
        """θ_0 for ``batch`` signals, per layer (B, in+1, out) (views, no copy)."""
        return [w.unsqueeze(0).expand(batch, -1, -1) for w in self.init_weights]

    def forward(self, *observations: torch.Tensor, steps: int | None = None,
                on_step: Callable[[int, list[torch.Tensor]], None] | None = None) -> list[torch.Tensor]:
        """Observations → adapted per-layer INR weights (B, in+1, out)."""
        if steps is None:
            steps = self.inner_steps if self.training else self.test_inner_steps
        loss_fn = self.loss_builder(self.hyponet, *observations)
        weights = self.initial_weights(observations[0].shape[0])
        return adapt(weights, loss_fn, self.step_sizes(), steps, self.second_order, on_step)
