"""Trans-INR against a reference written here from the paper's equations, in float64.

DESIGN.md §1, where the paper leaves a choice open, fixed as the official implementation
(yinboc/trans-inr) fixes it:

* weights from tokens: ``W_l[:, j] = normalize(W̄_l[:, j] ⊙ u_{group(j)})`` (L2 over the
  input dimension), the base bias row kept; column ``j`` belongs to group ``j mod g``
  (the official ``repeat`` grouping). This kit gives group ``k`` a contiguous block of
  columns instead, so the reference's parameters are the kit's with every layer's columns
  (and the next layer's input rows) reordered: the same INR, stored in another order;
* image hyponet: Fourier features ``cos(π x_c w_k)`` then ``sin(π x_c w_k)``, coordinate
  by coordinate, ``w_k = σ^{k/(K-1)}``; ReLU MLP; output + 0.5;
* NeRF hyponet: ``cos(x_c 2^{8k/(K-1)})`` then ``sin(...)``, no π; ReLU layers, then one
  (rgb, σ) layer; sigmoid rgb, ReLU density; learnit's volume rendering.

The reference takes the Transformer's output tokens from the kit (the encoder itself is
not what is checked here) and computes everything after them with plain tensor ops.
The volume-rendering quadrature alone is checked against learnit's equations in
``tests/test_render.py``; its reference is reused here for whole rays through a NeRF.
"""

import math

import pytest
import torch

from transinr.config import load_config
from transinr.models import build_model
from transinr.tasks.nvs import render_weights

from .test_render import learnit_reference

TOLERANCE = 1e-10
TINY = ["model.dim=16", "model.depth=1", "model.n_heads=2", "model.head_dim=8", "model.mlp_dim=32",
        "model.n_groups=4", "model.hyponet.depth=3", "model.hyponet.width=12", "model.hyponet.pe_dim=8"]
BATCH = 2


@pytest.fixture
def float64_build(one_thread):
    """Build and run in float64. The Fourier frequencies are computed when the hyponet is
    built, in the default dtype: a model built in float32 and cast afterwards would carry
    their float32 rounding (a phase error of ~1e-4 at σ = 1024)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def tiny_paper_model(name: str, image_size: int):
    """A paper config shrunk (width 12 in 4 groups of 3 columns), every parameter moved off
    its initial value so that no LayerNorm or bias is an identity."""
    config = load_config(name, TINY)
    torch.manual_seed(0)
    model = build_model(config, image_size)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return config, model


# -- the mapping between the two column orders -------------------------------------------


def official_column_order(fan_out: int, n_groups: int) -> list[int]:
    """Official column ``j`` is the ``(j div g)``-th column of group ``j mod g``; the kit's
    group ``k`` owns columns ``k·c … k·c + c - 1`` (``c = fan_out / g``). Returns, for each
    official column, the kit column that holds it."""
    groups = min(n_groups, fan_out)
    per_group = fan_out // groups
    return [(j % groups) * per_group + j // groups for j in range(fan_out)]


def official_orders(model, n_groups: int) -> list[tuple[list[int], list[int]]]:
    """Per hyponet layer: (row order, column order) of its (in + 1, out) weight in the official
    layout. A layer's inputs are the previous layer's outputs, so its rows follow the
    previous layer's column order; the first layer's rows are the Fourier features; the
    bias row stays last."""
    orders, previous = [], None
    for fan_in_plus_one, fan_out in model.hyponet.layer_shapes:
        fan_in = fan_in_plus_one - 1
        rows = (list(range(fan_in)) if previous is None else previous) + [fan_in]
        columns = official_column_order(fan_out, n_groups)
        orders.append((rows, columns))
        previous = columns
    return orders


def to_official(weights: list[torch.Tensor], orders) -> list[torch.Tensor]:
    """Kit weights, per layer (B, in + 1, out) → the same weights in the official layout."""
    return [w[:, rows][:, :, columns] for w, (rows, columns) in zip(weights, orders)]


# -- the reference ------------------------------------------------------------------------


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def official_parameters(model, orders) -> list[dict]:
    """The kit's base weights and token heads, per layer, moved into the official layout:
    base columns and rows reordered, the head's output rows (one per input of the layer)
    reordered like the layer's input rows."""
    layers = []
    for layer, (rows, columns) in enumerate(orders):
        norm, linear = model.weight_tokens.heads[str(layer)]
        inputs = rows[:-1]
        layers.append({
            "base": model.weight_tokens.base[layer].detach()[rows][:, columns],
            "norm": (norm.weight.detach(), norm.bias.detach(), norm.eps),
            "head": (linear.weight.detach()[inputs], linear.bias.detach()[inputs]),
        })
    return layers


def reference_weights(weight_tokens_out: torch.Tensor, layers: list[dict], n_groups: int) -> list[torch.Tensor]:
    """Transformer outputs at the weight tokens (B, n_tokens, dim) → per layer (B, in + 1, out).

    Layer l reads the next g_l = min(G, out_l) tokens; each gives u_k = Linear(LayerNorm(token)).
    Column j = normalize(W̄[:in, j] ⊙ u_{j mod g}); the bias row is W̄'s.
    """
    batch = weight_tokens_out.shape[0]
    weights, start = [], 0
    for layer in layers:
        base = layer["base"]
        fan_in, fan_out = base.shape[0] - 1, base.shape[1]
        groups = min(n_groups, fan_out)
        tokens = weight_tokens_out[:, start:start + groups]
        start += groups
        head_weight, head_bias = layer["head"]
        u = layer_norm(tokens, *layer["norm"]) @ head_weight.T + head_bias  # (B, g, in)
        weight = torch.empty(batch, fan_in + 1, fan_out)
        for j in range(fan_out):
            column = base[:fan_in, j] * u[:, j % groups]  # (B, in)
            weight[:, :fan_in, j] = column / torch.sqrt((column ** 2).sum(dim=-1, keepdim=True))
        weight[:, fan_in] = base[fan_in]
        weights.append(weight)
    assert start == weight_tokens_out.shape[1]  # every weight token is read once
    return weights


def cos_sin_features(coords: torch.Tensor, frequencies: list[float], times_pi: bool) -> torch.Tensor:
    """(..., C) → (..., 2·C·K): cos of every (coordinate c, frequency k) angle, c-major, then sin."""
    scale = math.pi if times_pi else 1.0
    angles = [scale * coords[..., c] * w for c in range(coords.shape[-1]) for w in frequencies]
    return torch.stack([torch.cos(a) for a in angles] + [torch.sin(a) for a in angles], dim=-1)


def image_frequencies(pe_dim: int, sigma: float) -> list[float]:
    """pe_dim / 2 frequencies log-spaced from 1 to σ."""
    count = pe_dim // 2
    return [sigma ** (k / (count - 1)) for k in range(count)]


def nerf_frequencies(pe_dim: int) -> list[float]:
    """pe_dim / 2 frequencies 2^e, e evenly spaced from 0 to 8."""
    count = pe_dim // 2
    return [2.0 ** (8 * k / (count - 1)) for k in range(count)]


def reference_mlp(features: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """features (B or 1, N, in_0), weights per layer (B, in + 1, out): ``[x, 1] @ W``, ReLU
    between layers, none after the last → (B, N, out_last)."""
    x = features
    for index, weight in enumerate(weights):
        x = torch.cat([x.expand(weight.shape[0], -1, -1), torch.ones(weight.shape[0], x.shape[1], 1)], dim=-1)
        x = x @ weight
        if index < len(weights) - 1:
            x = torch.clamp(x, min=0.0)
    return x


def reference_nerf(points: torch.Tensor, weights: list[torch.Tensor], pe_dim: int):
    """points (B, N, 3) → rgb (B, N, 3) = sigmoid, density (B, N) = ReLU of the raw output."""
    raw = reference_mlp(cos_sin_features(points, nerf_frequencies(pe_dim), times_pi=False), weights)
    return 1.0 / (1.0 + torch.exp(-raw[..., :3])), torch.clamp(raw[..., 3], min=0.0)


# -- the checks ---------------------------------------------------------------------------


def generated_and_reference(model, n_groups: int, *observations):
    """Run the kit's model; rebuild its weights with the reference from the same Transformer
    outputs. Returns (kit weights, kit weights in the official layout, reference weights)."""
    captured = {}
    hook = model.transformer.register_forward_hook(lambda module, args, out: captured.update(tokens=out.tokens))
    try:
        with torch.no_grad():
            kit = model(*observations)
    finally:
        hook.remove()
    orders = official_orders(model, n_groups)
    weight_tokens_out = captured["tokens"][:, -model.weight_tokens.n_tokens:]  # data tokens come first
    reference = reference_weights(weight_tokens_out, official_parameters(model, orders), n_groups)
    return kit, to_official(kit, orders), reference


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_image_trans_inr_is_the_papers_equations(float64_build):
    config, model = tiny_paper_model("celeba178", image_size=16)  # padded to 18 px: 2 × 2 patches of 9
    h = config.model.hyponet
    images = torch.rand(BATCH, 3, 16, 16)
    kit, kit_official, reference = generated_and_reference(model, config.model.n_groups, images)

    assert [w.dtype for w in kit] == [torch.float64] * len(kit)
    assert max_difference(kit_official, reference) <= TOLERANCE
    # The orders differ: in its own order the kit's weights are not the reference's.
    assert max_difference(kit, reference) > 1e-3

    rows = torch.linspace(-1 + 1 / 9, 1 - 1 / 9, 9)
    cols = torch.linspace(-1 + 1 / 7, 1 - 1 / 7, 7)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # (9, 7, 2)
    features = cos_sin_features(grid.reshape(1, -1, 2), image_frequencies(h.pe_dim, h.pe_sigma), times_pi=True)
    expected = (reference_mlp(features, reference) + h.out_bias).reshape(BATCH, 9, 7, 3)
    with torch.no_grad():
        shared = model.hyponet(grid[None], kit)  # one grid for every image
        own = model.hyponet(grid.expand(BATCH, 9, 7, 2), kit)  # a grid per image
    assert shared.shape == own.shape == (BATCH, 9, 7, 3)
    assert (shared - expected).abs().max().item() <= TOLERANCE
    assert (own - expected).abs().max().item() <= TOLERANCE


def tiny_nerf():
    config, model = tiny_paper_model("shapenet_chairs_1view", image_size=16)  # 2 × 2 patches of 8
    generator = torch.Generator().manual_seed(1)
    rgb = torch.rand(BATCH, 1, 3, 16, 16, generator=generator)
    rays_o = torch.randn(BATCH, 1, 16, 16, 3, generator=generator)
    rays_d = torch.randn(BATCH, 1, 16, 16, 3, generator=generator)
    return config, model, (rgb, rays_o, rays_d)


def test_nerf_trans_inr_is_the_papers_equations(float64_build):
    config, model, views = tiny_nerf()
    kit, kit_official, reference = generated_and_reference(model, config.model.n_groups, *views)
    assert [tuple(w.shape[1:]) for w in reference] == [(25, 12), (13, 12), (13, 4)]  # 3 × 8 features + 1
    assert max_difference(kit_official, reference) <= TOLERANCE
    assert max_difference(kit, reference) > 1e-3

    points = torch.rand(BATCH, 40, 3, generator=torch.Generator().manual_seed(2)) * 3 - 1.5
    expected_rgb, expected_density = reference_nerf(points, reference, config.model.hyponet.pe_dim)
    with torch.no_grad():
        out = model.hyponet(points, kit)
    assert out.shape == (BATCH, 40, 4)
    assert (out[..., :3] - expected_rgb).abs().max().item() <= TOLERANCE
    assert (out[..., 3] - expected_density).abs().max().item() <= TOLERANCE
    assert (expected_density == 0).any() and (expected_density > 0).any()  # both sides of the ReLU


@pytest.mark.parametrize("stratified", [False, True])
def test_rendered_rays_follow_learnit(float64_build, stratified):
    """Rays through the generated NeRF: learnit's depths (evenly spaced from near to far; in
    training each moved forward by a uniform fraction of the spacing), the reference NeRF
    at ``o + t·d`` and learnit's quadrature."""
    config, model, views = tiny_nerf()
    nvs = config.nvs
    assert model.hyponet.render_convention == "learnit"
    _, _, reference = generated_and_reference(model, config.model.n_groups, *views)
    with torch.no_grad():
        kit_weights = model(*views)

    generator = torch.Generator().manual_seed(3)
    rays, samples = 6, 16
    origins = torch.nn.functional.normalize(torch.randn(BATCH, rays, 3, generator=generator), dim=-1) * 4.0
    targets = torch.rand(BATCH, rays, 3, generator=generator) - 0.5
    lengths = 0.5 + 1.5 * torch.rand(BATCH, rays, 1, generator=generator)  # not unit: learnit ignores ‖d‖
    directions = torch.nn.functional.normalize(targets - origins, dim=-1) * lengths

    depths = torch.linspace(nvs.near, nvs.far, samples).expand(BATCH, rays, samples)
    if stratified:  # the same draws as the kit's: one per (object, ray, sample)
        jitter = torch.rand(BATCH, rays, samples, generator=torch.Generator().manual_seed(4))
        depths = depths + jitter * (nvs.far - nvs.near) / (samples - 1)
    points = origins[..., None, :] + directions[..., None, :] * depths[..., None]  # (B, R, S, 3)
    rgb, density = reference_nerf(points.reshape(BATCH, -1, 3), reference, config.model.hyponet.pe_dim)
    expected, _ = learnit_reference(rgb.reshape(BATCH, rays, samples, 3), density.reshape(BATCH, rays, samples),
                                    depths)

    with torch.no_grad():
        rendered = render_weights(model.hyponet, kit_weights, origins, directions, nvs.near, nvs.far, samples,
                                  stratified=stratified, generator=torch.Generator().manual_seed(4))
    assert rendered.shape == (BATCH, rays, 3)
    assert (rendered - expected).abs().max().item() <= TOLERANCE
    assert (expected < 0.99).any()  # the NeRF is not empty along these rays
