"""Hyponets: the INRs whose weights a meta-learner writes.

A hyponet owns no parameters. It is a recipe — an input encoding, the shapes of
its linear layers, and an output transform — evaluated with a weight set handed
to it, so one call runs B different INRs, one per signal in the batch.

Weights come as a list with one tensor per layer, each (B, in_l + 1, out_l): the
bias folded in as the last row, as in DESIGN.md §1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..render import check_convention


class FourierFeatures(nn.Module):
    """``[cos(π x w_k), sin(π x w_k)]`` per coordinate, ``w_k`` log-spaced in [1, σ].

    ``n_features`` counts all outputs: ``in_dim`` coordinates × 2 × frequencies. The
    order is all cosines then all sines, each coordinate-major (x's frequencies, then
    y's), as in the official code. ``times_pi=False`` drops the π (the NeRF encoding,
    frequencies 2^0 … 2^8 for σ = 256).
    """

    def __init__(self, in_dim: int, n_features: int, sigma: float, times_pi: bool = True):
        super().__init__()
        if n_features % (2 * in_dim):
            raise ValueError(f"n_features {n_features} must be a multiple of 2 × in_dim {in_dim}")
        n_freq = n_features // (2 * in_dim)
        freqs = torch.exp(torch.linspace(0.0, math.log(sigma), n_freq)) * (math.pi if times_pi else 1.0)
        self.register_buffer("freqs", freqs, persistent=False)
        self.out_dim = n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in_dim) → (..., n_features)."""
        angles = (x.unsqueeze(-1) * self.freqs).flatten(-2)  # (..., in_dim · n_freq)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def shared_input_layer(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One input (N, in) through B different layers (B, in + 1, out) → (B, N, out).

    The B weight matrices side by side make one (in, B·out) matrix, so this is a single
    large matmul instead of B small ones on B copies of the same input.
    """
    batch, fan_in_plus_one, fan_out = weight.shape
    side_by_side = weight[:, :-1].permute(1, 0, 2).reshape(fan_in_plus_one - 1, batch * fan_out)
    out = (x @ side_by_side).view(x.shape[0], batch, fan_out).transpose(0, 1)
    return out + weight[:, -1:, :]


# An output layer with at most this many outputs (an INR's rgb or rgb + density head) is
# computed by NarrowLinear.
NARROW_OUTPUTS = 8


class NarrowLinear(torch.autograd.Function):
    """``bias + x @ W`` of B layers with few outputs: x (B, N, in), weight (B, in, out),
    bias (B, 1, out) → (B, N, out), the same sums as ``torch.baddbmm(bias, x, weight)``.

    Laid out as x @ W, a product with 3 or 4 output columns runs at a few per cent of the
    matmul peak, and so does its weight gradient xᵀ @ grad (an (in × N)·(N × out) product).
    Transposed, (Wᵀ @ xᵀ)ᵀ and (gradᵀ @ x)ᵀ, the few outputs are the rows of a wide product:
    several times faster. The output is that transposed (non-contiguous) view. The backward
    is made of differentiable ops, so a second-order gradient (MAML) goes through it; it works
    in the dtype of the incoming gradient and hands back each input's own (autocast).
    """

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(bias.transpose(1, 2), weight.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(grad, weight.to(grad.dtype).transpose(1, 2)).to(x_dtype)  # (B, N, in)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.bmm(grad.transpose(1, 2), x.to(grad.dtype)).transpose(1, 2).to(weight_dtype)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=1, keepdim=True).to(bias_dtype)
        return grad_x, grad_weight, grad_bias


def run_mlp(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """Batched MLP with ReLU between layers and none after the last.

    x: (B, N, in_0), or (1, N, in_0) when all B INRs read the same inputs (an image
    grid); weights[l]: (B, in_l + 1, out_l) → (B, N, out_last).
    """
    last = len(weights) - 1
    for index, weight in enumerate(weights):
        if x.shape[0] == 1 and weight.shape[0] > 1:
            x = shared_input_layer(x[0], weight)
        elif index == last and weight.shape[-1] <= NARROW_OUTPUTS:  # no ReLU follows its view
            x = NarrowLinear.apply(x, weight[:, :-1, :], weight[:, -1:, :])
        else:
            # baddbmm fuses ``bias + x @ W`` into one kernel.
            x = torch.baddbmm(weight[:, -1:, :], x, weight[:, :-1, :])
        if index < last:
            # In place: the layer's output is a fresh tensor that its backward does not
            # need (it keeps its inputs), so ReLU reuses its memory instead of a new one.
            x = F.relu(x, inplace=True)
    return x


# Points evaluated at a time when no gradient is needed (rendering, scoring): the batch's
# activations for that many points stay in cache and in the allocator's reused memory.
# A whole view at once instead makes every layer a fresh allocation of hundreds of MB
# (4096 rays × 128 samples × 256 channels × 4 bytes = 512 MB), written and read from RAM.
EVALUATION_BLOCK_VALUES = 2**18  # batch × points × widest layer, per block


def needs_gradient(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class MLPHyponet(nn.Module):
    """Fourier-feature MLP with a configurable output transform.

    Subclasses choose the input size and ``transform_output``. ``pe_dim`` counts the
    features of one coordinate (cos and sin of pe_dim / 2 frequencies), as the official
    code does; with ``pe_per_coordinate=False`` it counts all of them.
    """

    def __init__(self, in_dim: int, out_dim: int, depth: int, width: int, pe_dim: int, pe_sigma: float,
                 extra_features: int = 0, pe_per_coordinate: bool = True, pe_times_pi: bool = True):
        super().__init__()
        if depth < 1:
            raise ValueError("a hyponet needs at least one layer")
        self.in_dim = in_dim
        self.out_dim = out_dim
        n_features = pe_dim * in_dim if pe_per_coordinate else pe_dim
        self.encoding = FourierFeatures(in_dim, n_features, pe_sigma, pe_times_pi)
        sizes = [n_features + extra_features] + [width] * (depth - 1) + [out_dim]
        self.layer_shapes: list[tuple[int, int]] = [
            (fan_in + 1, fan_out) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
        ]

    def encode(self, coords: torch.Tensor, **extra) -> torch.Tensor:
        return self.encoding(coords)

    def transform_output(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, coords: torch.Tensor, weights: list[torch.Tensor], **extra) -> torch.Tensor:
        """coords: (B, ..., in_dim), or (1, ..., in_dim) shared by all B INRs (encoded
        once); weights: per layer (B, in+1, out) → (B, ..., out_dim). Tensors in
        ``extra`` (view directions) are shaped like ``coords``.

        Without a gradient to compute, the points go through in blocks (see
        ``EVALUATION_BLOCK_VALUES``): each point's output is the same, the memory traffic less.
        """
        coord_batch, *spatial, _ = coords.shape
        points = coords.reshape(coord_batch, -1, self.in_dim)
        extra = {key: value.reshape(coord_batch, points.shape[1], -1) if torch.is_tensor(value) else value
                 for key, value in extra.items()}
        batch = weights[0].shape[0]
        extra_tensors = [value for value in extra.values() if torch.is_tensor(value)]
        widest = max(max(fan_in - 1, fan_out) for fan_in, fan_out in self.layer_shapes)
        block = max(1, EVALUATION_BLOCK_VALUES // (batch * widest))
        if needs_gradient(points, *weights, *extra_tensors) or points.shape[1] <= block:
            out = self.transform_output(run_mlp(self.encode(points, **extra), weights))
        else:
            out = None
            for start in range(0, points.shape[1], block):
                rows = slice(start, start + block)
                block_extra = {key: value[:, rows] if torch.is_tensor(value) else value
                               for key, value in extra.items()}
                part = self.transform_output(run_mlp(self.encode(points[:, rows], **block_extra), weights))
                if out is None:  # the dtype the layers give (bf16 under autocast)
                    out = part.new_empty(batch, points.shape[1], part.shape[-1])
                out[:, rows] = part
        return out.reshape(batch, *spatial, -1)


class ImageHyponet(MLPHyponet):
    """(x, y) ∈ [-1, 1]² → RGB. DESIGN.md: 5 layers × 256, 128 features per coordinate
    (first layer 257 × 256), output + 0.5."""

    def __init__(self, depth: int = 5, width: int = 256, pe_dim: int = 128, pe_sigma: float = 1024.0,
                 out_bias: float = 0.5, channels: int = 3, pe_per_coordinate: bool = True,
                 pe_times_pi: bool = True):
        super().__init__(2, channels, depth, width, pe_dim, pe_sigma,
                         pe_per_coordinate=pe_per_coordinate, pe_times_pi=pe_times_pi)
        self.out_bias = out_bias

    def transform_output(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out_bias


class NeRFHyponet(MLPHyponet):
    """Point (x, y, z) [+ view direction] → (rgb ∈ [0,1]³, density ≥ 0).

    DESIGN.md: 6 layers × 256, positional encoding cos / sin(x · 2^k) with 20
    frequencies from 2^0 to 2^8 (pe_dim 40 per coordinate: first layer 121 × 256).
    View directions, when used, are Fourier-encoded too and joined to the point's
    features at the input (the output stays one MLP so the weight tokens see one
    plain stack of layers).

    ``render_convention`` names the volume-rendering quadrature its densities are
    meant for (:func:`transinr.render.volume_render`): part of the recipe, since the
    same density field composites differently under another one.
    """

    def __init__(self, depth: int = 6, width: int = 256, pe_dim: int = 40, pe_sigma: float = 256.0,
                 use_viewdirs: bool = False, viewdir_pe_dim: int = 24, pe_per_coordinate: bool = True,
                 pe_times_pi: bool = False, render_convention: str = "learnit"):
        super().__init__(3, 4, depth, width, pe_dim, pe_sigma,
                         extra_features=viewdir_pe_dim if use_viewdirs else 0,
                         pe_per_coordinate=pe_per_coordinate, pe_times_pi=pe_times_pi)
        self.use_viewdirs = use_viewdirs
        self.render_convention = check_convention(render_convention)
        if use_viewdirs:
            self.viewdir_encoding = FourierFeatures(3, viewdir_pe_dim, 8.0, pe_times_pi)

    def encode(self, coords: torch.Tensor, viewdirs: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encoding(coords)
        if not self.use_viewdirs:
            return features
        if viewdirs is None:
            raise ValueError("this NeRF hyponet was built with use_viewdirs=True: pass viewdirs")
        dirs = F.normalize(viewdirs.reshape(coords.shape), dim=-1)
        return torch.cat([features, self.viewdir_encoding(dirs)], dim=-1)

    def transform_output(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.sigmoid(x[..., :3]), F.relu(x[..., 3:])], dim=-1)
