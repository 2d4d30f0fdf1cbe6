"""Why Trans-INR works, computed: attention of weight tokens, layers as update steps,
a Transformer layer that *is* a gradient step, and what the generated weights share.

Every function returns arrays or plain dicts; ``transinr.figures`` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import psnr_per_item


# --------------------------------------------------------------------------------------
# 1. Weight-token attention maps
# --------------------------------------------------------------------------------------

@dataclass
class WeightTokenAttention:
    """Attention of every weight token to every data token.

    maps: (B, T, heads, n_weight_tokens, *data_shape) — per Transformer layer T and head,
      the softmax weight each weight token puts on each data token, laid out on the data
      grid: (gh, gw) for an image, (V, gh, gw) for V posed views.
    to_weight_tokens: (B, T, heads, n_weight_tokens) — the rest of each row: attention
      paid to the weight tokens themselves (rows sum to one over both).
    token_layer, token_group: (n_weight_tokens,) — the INR layer and group of each token.
    """

    maps: torch.Tensor
    to_weight_tokens: torch.Tensor
    token_layer: torch.Tensor
    token_group: torch.Tensor

    def for_layer(self, inr_layer: int) -> torch.Tensor:
        """(B, T, heads, g_l, *data_shape): the maps of one INR layer's tokens."""
        return self.maps[:, :, :, self.token_layer == inr_layer]

    def mean_map(self, inr_layer: int, transformer_layer: int = -1) -> torch.Tensor:
        """(B, *data_shape): one INR layer's tokens averaged over heads and groups."""
        return self.for_layer(inr_layer)[:, transformer_layer].mean(dim=(1, 2))


def view_attention_shares(attention: WeightTokenAttention) -> torch.Tensor:
    """(T, V + 1): per Transformer layer, the share of all weight-token attention that
    goes to each support view's tokens (columns 0 … V-1) and to the weight tokens
    themselves (last column), averaged over objects, heads and weight tokens.

    A 2-view model that reads its second view puts a comparable share on column 1;
    ``maps`` must be laid out per view (posed views in, see :func:`weight_token_attention`).
    """
    if attention.maps.dim() != 7:
        raise ValueError(f"maps of shape {tuple(attention.maps.shape)}: expected (B, T, heads, W, V, gh, gw), "
                         "the layout of posed views")
    per_view = attention.maps.flatten(-2).sum(-1)  # (B, T, heads, W, V)
    shares = torch.cat([per_view, attention.to_weight_tokens.unsqueeze(-1)], dim=-1)
    return shares.mean(dim=(0, 2, 3))


def data_grid_shape(tokenizer) -> tuple[int, ...]:
    return tuple(tokenizer.grid_shape)


@torch.no_grad()
def weight_token_attention(model, *observations: torch.Tensor) -> WeightTokenAttention:
    """Run ``model`` on observations and collect the weight tokens' attention."""
    model.eval()
    output = model.run(*observations, return_attention=True)
    attention = torch.stack(output.attention, dim=1)  # (B, T, heads, N, N)
    n_weight = model.weight_tokens.n_tokens
    n_data = attention.shape[-1] - n_weight
    rows = attention[..., n_data:, :]  # the weight tokens as queries
    grid = data_grid_shape(model.tokenizer)
    views = n_data // (grid[0] * grid[1])
    data_shape = grid if views == 1 else (views, *grid)
    maps = rows[..., :n_data].reshape(*rows.shape[:-1], *data_shape)
    layer_of, group_of = [], []
    for layer, positions in model.weight_tokens.token_slices().items():
        count = positions.stop - positions.start
        layer_of += [layer] * count
        group_of += list(range(count))
    return WeightTokenAttention(maps, rows[..., n_data:].sum(-1), torch.tensor(layer_of),
                                torch.tensor(group_of))


def upsample_map(attention_map: torch.Tensor, size: int) -> torch.Tensor:
    """(B, gh, gw) → (B, size, size), nearest, so a patch's weight covers its pixels."""
    return F.interpolate(attention_map.unsqueeze(1), size=(size, size), mode="nearest")[:, 0]


def attention_on_pixels(tokenizer, attention_map: torch.Tensor) -> torch.Tensor:
    """(B, gh, gw) attention on patch tokens → (B, H, W) on the image's pixels.

    Each patch's weight is spread evenly over its p×p pixels (so the map still sums
    to the attention paid), and the zero-padding border is cropped away.
    """
    patch, padding = tokenizer.patch_size, tokenizer.padding
    padded = attention_map.shape[-1] * patch
    pixels = upsample_map(attention_map, padded) / patch**2
    return pixels[:, padding:padded - padding, padding:padded - padding] if padding else pixels


def support_view_attention(model, support_rgb: torch.Tensor, rays_o: torch.Tensor, rays_d: torch.Tensor,
                           transformer_layer: int | None = -1) -> torch.Tensor:
    """Where a view-synthesis model's weight tokens look on each of its support views.

    support_rgb: (B, V, 3, H, W); rays_o, rays_d: (B, V, H, W, 3), as the model reads them.
    Returns (B, V, gh, gw): one Transformer layer's attention from the weight tokens to each
    patch of each view, averaged over heads and over every weight token — or, with
    ``transformer_layer=None``, every layer's: (B, T, V, gh, gw). Summed over a view's
    patches it is that layer's entry of :func:`view_attention_shares` for one object.
    """
    maps = weight_token_attention(model, support_rgb, rays_o, rays_d).maps
    if maps.dim() == 6:  # one view comes laid out without a view axis: give it one
        maps = maps.unsqueeze(4)
    maps = maps.mean(dim=(2, 3))  # (B, T, V, gh, gw)
    return maps if transformer_layer is None else maps[:, transformer_layer]


def camera_angles(query_poses: torch.Tensor, support_poses: torch.Tensor) -> torch.Tensor:
    """Degrees between each query camera's and each support camera's direction from the
    object centre: poses (B, Q, 4, 4) and (B, V, 4, 4) camera-to-world → (B, Q, V)."""
    def directions(poses):
        centres = poses[..., :3, 3]
        return centres / centres.norm(dim=-1, keepdim=True)

    cosine = directions(query_poses) @ directions(support_poses).transpose(-1, -2)
    return torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))


@torch.no_grad()
def support_view_use(task, model, batch: dict, subsets=((0, 1), (0,), (1,))) -> dict:
    """What each support view adds: a view-synthesis model given subsets of its support views.

    batch: an evaluation batch (:class:`transinr.data.views.PosedViews`, B objects, V support
    and Q held-out views). For each subset (support view indices), the model generates its
    NeRFs from those views alone and renders every held-out view and every support view.
    Returns {"angles": (B, Q, V) degrees between held-out and support cameras,
    "held_out": {subset: (B, Q) PSNR}, "support": {subset: (B, V) PSNR of re-rendering each
    support view}}. A model that uses a view scores higher on it, and on held-out views
    near it, when it is in the subset than when it is not.

    With the subsets (0, 1), (0,) and (1,) it also returns "midpoint_held_out": (B, Q) PSNR of
    the NeRF whose weights are the mean of the two single-view NeRFs' weights, and
    "midpoint_distance": (B,) the distance of the 2-view weights from that mean over the
    distance between the two single-view weight sets (all layers flattened). A model that
    merely averages what each view says has its 2-view weights near the mean (distance ≪ 1)
    and scores about the same from it; one that combines the views does better than the mean.
    """
    from .tasks.nvs import view_psnr

    support_keys = ("support_rgb", "support_rays_o", "support_rays_d", "support_poses")
    as_query = dict(batch, query_rgb=batch["support_rgb"], query_rays_o=batch["support_rays_o"],
                    query_rays_d=batch["support_rays_d"])
    held_out, support, generated = {}, {}, {}
    for subset in subsets:
        given = dict(batch, **{key: batch[key][:, list(subset)] for key in support_keys})
        weights = generated[tuple(subset)] = task.generate(model, given)
        for scores, views in ((held_out, batch), (support, as_query)):
            scores[tuple(subset)] = view_psnr(task.render_query_views(model, views, weights), views["query_rgb"])
    result = {"angles": camera_angles(batch["query_poses"], batch["support_poses"]), "held_out": held_out,
              "support": support}
    if {(0, 1), (0,), (1,)} <= set(generated):
        def flat(weights):  # (B, every weight of every layer)
            return torch.cat([w.flatten(1) for w in weights], 1)

        midpoint = [(a + b) / 2 for a, b in zip(generated[(0,)], generated[(1,)])]
        result["midpoint_held_out"] = view_psnr(task.render_query_views(model, batch, midpoint), batch["query_rgb"])
        result["midpoint_distance"] = ((flat(generated[(0, 1)]) - flat(midpoint)).norm(dim=1)
                                       / (flat(generated[(0,)]) - flat(generated[(1,)])).norm(dim=1).clamp_min(1e-12))
    return result


def input_dependence(task, model, batch: dict) -> dict:
    """Does the generated NeRF depend on what the model is shown? Each object of an evaluation
    batch (B ≥ 2 objects) is rendered at its own held-out cameras from NeRFs generated from its
    own support views and from those of the next object in the batch (views and cameras both).

    Returns {"own": (B,) held-out PSNR from its own views, "other": (B,) from the other
    object's, "render_change": (B,) RMS change of the rendered views when the views are
    swapped, "truth_change": (B,) RMS difference between the two objects' true held-out views}.
    A model that reads its input scores far lower given another object's views and its
    renders move about as much as the truth does; one that ignores its input (an
    unconditional "mean object") scores the same and its renders hardly move.
    """
    from .tasks.nvs import object_psnr

    if batch["support_rgb"].shape[0] < 2:
        raise ValueError("input_dependence needs a batch of at least two objects to swap their views")
    support_keys = ("support_rgb", "support_rays_o", "support_rays_d", "support_poses")
    swapped = dict(batch, **{key: batch[key].roll(1, dims=0) for key in support_keys})
    renders = {}
    for name, given in (("own", batch), ("other", swapped)):
        renders[name] = task.render_query_views(model, batch, task.generate(model, given))  # (B, Q, 3, H, W)
    truth = batch["query_rgb"]

    def rms(x):
        return x.pow(2).flatten(1).mean(1).sqrt()

    return {"own": object_psnr(renders["own"], truth), "other": object_psnr(renders["other"], truth),
            "render_change": rms(renders["own"] - renders["other"]),
            "truth_change": rms(truth - truth.roll(1, dims=0))}


def object_to_background_attention(patch_maps: torch.Tensor, views: torch.Tensor, padding: int = 0,
                                   white: float = 0.95) -> torch.Tensor:
    """How much more attention a patch showing the object gets than a background patch.

    patch_maps: (..., V, gh, gw) attention on the patches of V views (e.g.
    :func:`support_view_attention`); views: (V, 3, H, W) on a white background, cut into
    patches with ``padding`` zero pixels around them as the tokenizer does. A patch shows
    the object when any of its pixels is darker than ``white`` in some channel. Returns
    (...,): mean attention on object patches / mean attention on background patches
    (1: no preference).
    """
    grid = patch_maps.shape[-1]
    dark = (views.min(dim=1).values < white).float()  # (V, H, W)
    dark = F.pad(dark, [padding] * 4)
    on_object = F.max_pool2d(dark.unsqueeze(1), dark.shape[-1] // grid)[:, 0].bool()  # (V, gh, gw)
    if on_object.all() or not on_object.any():
        raise ValueError("every patch shows the object, or none does: no background to compare with")
    return patch_maps[..., on_object].mean(-1) / patch_maps[..., ~on_object].mean(-1)


# --------------------------------------------------------------------------------------
# 2. Layer-by-layer decoding: Transformer layers as update steps
# --------------------------------------------------------------------------------------

@torch.no_grad()
def layerwise_psnr(model, images: torch.Tensor) -> torch.Tensor:
    """PSNR on the input image of the INR decoded after each Transformer layer.

    Index 0 decodes the learned initial weight tokens φ₀ (no data seen: Trans-INR's own
    "learned initialisation"); index i decodes the tokens after layer i, with the same
    output heads. Returns (depth + 1, B).
    """
    from .tasks.image import render_image

    model.eval()
    output = model.run(images, return_layer_weights=True)
    batch, size = images.shape[0], images.shape[-1]
    initial = model.weight_tokens.decode(model.weight_tokens.initial(batch))
    scores = []
    for weights in [initial] + output.layer_weights:
        rendered = render_image(model.hyponet, weights, size, size)
        scores.append(psnr_per_item(rendered, images))
    return torch.stack(scores)


@torch.no_grad()
def trace_weight_token(model, *observations: torch.Tensor, inr_layer: int, group: int) -> dict:
    """Follow one weight token of a Trans-INR model from the Transformer's output to its
    columns of the generated weight W_l, on ``observations`` (an image batch (B, 3, H, W),
    or posed views).

    The output tokens are read from the model's own forward pass and decoded by
    :meth:`~transinr.models.weight_tokens.WeightTokens.trace`, the code that writes the
    weights. Returns its dict (``token`` (B, dim), ``u`` (B, d), ``base`` (d, c),
    ``modulated`` (B, d, c), ``columns`` (B, d, c), ``column_indices`` (c,)) plus
    ``generated``: (B, d + 1, out_l), the layer's weight the model generated, bias row last.
    """
    model.eval()
    captured = {}
    # A hook on the Transformer catches its output tokens during the model's own pass.
    hook = model.transformer.register_forward_hook(
        lambda module, inputs, output: captured.update(tokens=output.tokens))
    try:
        weights = model(*observations)
    finally:
        hook.remove()
    weight_tokens = captured["tokens"][:, -model.weight_tokens.n_tokens:]
    trace = model.weight_tokens.trace(weight_tokens, inr_layer, group)
    trace["generated"] = weights[inr_layer]
    return trace


# --------------------------------------------------------------------------------------
# 3. A Transformer layer that is one step of gradient descent
# --------------------------------------------------------------------------------------

class LinearSelfAttention(nn.Module):
    """One head of linear (softmax-free) self-attention with a residual connection:
    ``x_q ← x_q + Σ_k (W_Q x_q · W_K x_k) W_V x_k``. x: (B, N, D)."""

    def __init__(self, dim: int, key_dim: int):
        super().__init__()
        self.query = nn.Linear(dim, key_dim, bias=False)
        self.key = nn.Linear(dim, key_dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.query(x) @ self.key(x).transpose(1, 2)  # (B, N, N)
        return x + scores @ self.value(x)


@dataclass
class GradientTokenLayout:
    """Where each quantity lives in a token of width ``2(d+1) + 2c``.

    [ w-slot (d+1) | h-slot (d+1) | t-slot (c) | e-slot (c) ]
    Column token j: w-slot = column j of W (its bias entry last), e-slot = one-hot(j).
    Pixel token i:  h-slot = (h_i, 1), t-slot = target_i − output offset.
    """

    hidden: int  # d, the width of the frozen features
    channels: int  # c, the columns of W (output channels)

    @property
    def aug(self) -> int:
        return self.hidden + 1

    @property
    def dim(self) -> int:
        return 2 * self.aug + 2 * self.channels

    def slots(self):
        a, c = self.aug, self.channels
        return slice(0, a), slice(a, 2 * a), slice(2 * a, 2 * a + c), slice(2 * a + c, 2 * a + 2 * c)


def gradient_step_layer(hidden: int, channels: int, n_pixels: int, step_size: float) -> LinearSelfAttention:
    """A linear self-attention layer whose residual update is one gradient step.

    Setting: every hyponet layer but the last is frozen, so pixel i has fixed features
    h̃_i = (h_i, 1) and the prediction is y_i = Wᵀ h̃_i + b₀ with W of shape (d+1, c).
    The loss is the MSE over pixels and channels, L = 1/(N c) Σ_i ‖Wᵀh̃_i + b₀ − t_i‖², so
    ∂L/∂w_j = 2/(N c) Σ_i r_ij h̃_i with residual r_ij = w_j·h̃_i − (t_ij − b₀).

    Attention, with tokens laid out as in :class:`GradientTokenLayout`:
      * query of column token j = [w_j ; −e_j], query of a pixel token = 0
        (W_Q copies the w-slot and minus the e-slot; pixel tokens have neither);
      * key of pixel token i = [h̃_i ; t_i − b₀], key of a column token = 0
        (W_K copies the h- and t-slots; column tokens have neither);
      * so the score of column j on pixel i is w_j·h̃_i − (t_ij − b₀) = r_ij, and column
        tokens score 0 against each other;
      * value of pixel token i = −2α/(N c) · h̃_i written into the w-slot (column tokens'
        values are 0).
    The residual update of column token j is therefore −α · 2/(N c) Σ_i r_ij h̃_i =
    −α ∂L/∂w_j, written into its w-slot: exactly one step of gradient descent. Pixel
    tokens' queries are 0, so they pass through unchanged, and the next copy of the layer
    sees the updated columns: K stacked copies are K steps.
    """
    layout = GradientTokenLayout(hidden, channels)
    w_slot, h_slot, t_slot, e_slot = layout.slots()
    a, c = layout.aug, channels
    layer = LinearSelfAttention(layout.dim, a + c)
    with torch.no_grad():
        for linear in (layer.query, layer.key, layer.value):
            linear.weight.zero_()
        # nn.Linear computes x @ weightᵀ: weight[out, in].
        layer.query.weight[:a, w_slot] = torch.eye(a)
        layer.query.weight[a:, e_slot] = -torch.eye(c)
        layer.key.weight[:a, h_slot] = torch.eye(a)
        layer.key.weight[a:, t_slot] = torch.eye(c)
        layer.value.weight[w_slot, h_slot] = torch.eye(a) * (-2.0 * step_size / (n_pixels * c))
    return layer


def gradient_tokens(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                    out_bias: float = 0.0) -> torch.Tensor:
    """Lay out a problem as tokens.

    features: (B, N, d) frozen hidden features; targets: (B, N, c);
    weight: (B, d+1, c) the last layer with its bias row last.
    Returns (B, c + N, D): the c column tokens first, then the N pixel tokens.
    """
    batch, n_pixels, hidden = features.shape
    channels = targets.shape[-1]
    layout = GradientTokenLayout(hidden, channels)
    w_slot, h_slot, t_slot, e_slot = layout.slots()
    tokens = features.new_zeros(batch, channels + n_pixels, layout.dim)
    tokens[:, :channels, w_slot] = weight.transpose(1, 2)
    tokens[:, :channels, e_slot] = torch.eye(channels, dtype=features.dtype, device=features.device)
    augmented = torch.cat([features, features.new_ones(batch, n_pixels, 1)], dim=-1)
    tokens[:, channels:, h_slot] = augmented
    tokens[:, channels:, t_slot] = targets - out_bias
    return tokens


def weight_from_tokens(tokens: torch.Tensor, hidden: int, channels: int) -> torch.Tensor:
    """(B, c + N, D) → the (B, d+1, c) weight held by the column tokens."""
    w_slot = GradientTokenLayout(hidden, channels).slots()[0]
    return tokens[:, :channels, w_slot].transpose(1, 2)


def gradient_descent_reference(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                               step_size: float, steps: int, out_bias: float = 0.0) -> torch.Tensor:
    """K steps of plain gradient descent on the MSE, by autograd — what the layer must match."""
    weight = weight.detach().clone().requires_grad_(True)
    augmented = torch.cat([features, features.new_ones(*features.shape[:-1], 1)], dim=-1)
    for _ in range(steps):
        prediction = augmented @ weight + out_bias
        # Sum over the batch so each instance gets its own mean-over-pixels gradient.
        loss = ((prediction - targets) ** 2).mean(dim=(1, 2)).sum()
        (grad,) = torch.autograd.grad(loss, weight)
        weight = (weight - step_size * grad).detach().requires_grad_(True)
    return weight.detach()


def gradient_descent_by_attention(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                                  step_size: float, steps: int, out_bias: float = 0.0) -> torch.Tensor:
    """K stacked hand-built attention layers applied to the token layout → final weight."""
    hidden, channels = features.shape[-1], targets.shape[-1]
    layer = gradient_step_layer(hidden, channels, features.shape[1], step_size).to(features)
    tokens = gradient_tokens(features, targets, weight, out_bias)
    with torch.no_grad():
        for _ in range(steps):
            tokens = layer(tokens)
    return weight_from_tokens(tokens, hidden, channels)


# --------------------------------------------------------------------------------------
# 5. What the generated weights share
# --------------------------------------------------------------------------------------

@torch.no_grad()
def generated_weight_statistics(model, images: torch.Tensor) -> list[dict]:
    """Per INR layer: how far generated columns turn from the base, and how alike they
    are across inputs.

    For layer l with columns w_j (each unit length after normalisation):
      * ``cosine_to_base``: mean over images and columns of cos(w_j, W̄_j) — 1 means the
        layer is the base for every input;
      * ``cosine_across_inputs``: mean over columns and over pairs of different images of
        cos(w_j(image a), w_j(image b)) — near 1 means the layer is shared, lower means it
        carries the instance;
      * ``generated``: whether the layer has weight tokens at all.
    """
    model.eval()
    weights = model(images)
    stats = []
    for layer, (weight, base) in enumerate(zip(weights, model.weight_tokens.base)):
        columns = F.normalize(weight[:, :-1], dim=1)  # (B, in, out)
        base_columns = F.normalize(base[:-1], dim=0)  # (in, out)
        to_base = (columns * base_columns).sum(1).mean().item()
        batch = columns.shape[0]
        pairwise = torch.einsum("aio,bio->abo", columns, columns)  # (B, B, out)
        off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=columns.device)
        across = pairwise[off_diagonal].mean().item() if batch > 1 else float("nan")
        stats.append({"layer": layer, "shape": tuple(base.shape), "cosine_to_base": to_base,
                      "cosine_across_inputs": across,
                      "generated": layer in model.weight_tokens.groups})
    return stats


# --------------------------------------------------------------------------------------
# 6. Learned Init's inner steps, decoded one by one (the counterpart of section 2)
# --------------------------------------------------------------------------------------

@torch.no_grad()
def learned_init_step_psnr(model, images: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """PSNR on the input image of a Learned Init model after each inner SGD step.

    Index 0 renders the meta-learned initialisation θ₀ (no data seen), index i the
    weights after i gradient steps on the image's own pixels. ``steps`` defaults to the
    number the model was evaluated with (``test_inner_steps``); more steps than it was
    trained for show what happens past the meta-trained horizon. Returns (K + 1, B),
    comparable row by row with :func:`layerwise_psnr`.
    """
    from .tasks.image import render_image

    model.eval()
    steps = model.test_inner_steps if steps is None else steps
    size = images.shape[-1]
    scores = []

    def score(weights: list[torch.Tensor]) -> None:
        rendered = render_image(model.hyponet, weights, size, size)
        scores.append(psnr_per_item(rendered, images))

    score(model.initial_weights(images.shape[0]))
    model(images, steps=steps, on_step=lambda _, weights: score(weights))
    return torch.stack(scores)


# --------------------------------------------------------------------------------------
# 7. The gradient-step layer on a trained INR's own features
# --------------------------------------------------------------------------------------

def penultimate_features(hyponet, weights: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
    """The features the last hyponet layer reads: (B, N, d) after the last ReLU.

    coords: (B, N, in_dim); weights: per layer (B, in+1, out). The hyponet's output is
    ``transform_output(features @ W_last + b_last)`` with these features.
    """
    from .models.hyponets import run_mlp

    hidden = run_mlp(hyponet.encode(coords), weights[:-1])
    # run_mlp leaves its own last layer linear; in the full MLP a ReLU follows it.
    return F.relu(hidden)


@dataclass
class LastLayerProblem:
    """Fit the last INR layer on frozen hidden features: a least-squares problem.

    features: (B, N, d) the generated INR's penultimate features at the N pixels;
    targets: (B, N, c) the image's pixels; generated: (B, d+1, c) the last layer Trans-INR
    wrote (bias row last); out_bias: the constant the image hyponet adds to its output.
    """

    features: torch.Tensor
    targets: torch.Tensor
    generated: torch.Tensor
    out_bias: float


@torch.no_grad()
def last_layer_problem(model, images: torch.Tensor) -> LastLayerProblem:
    """Real hidden features of a trained image meta-learner on ``images`` (B, 3, H, W)."""
    from .coords import make_coord_grid

    model.eval()
    weights = model(images)
    batch, channels, height, width = images.shape
    coords = make_coord_grid(height, width, device=images.device, dtype=images.dtype)
    coords = coords.reshape(1, -1, 2).expand(batch, -1, -1)
    features = penultimate_features(model.hyponet, weights, coords)
    targets = images.permute(0, 2, 3, 1).reshape(batch, -1, channels)  # the hyponet's pixel order
    return LastLayerProblem(features, targets, weights[-1], float(getattr(model.hyponet, "out_bias", 0.0)))


def stable_step_size(features: torch.Tensor, channels: int) -> float:
    """1 / (largest curvature) of the MSE in the last layer: the largest safe fixed step.

    For L = 1/(N c) Σ‖Wᵀh̃ + b₀ − t‖² each column's Hessian is 2/(N c) H̃ᵀH̃; gradient
    descent with step 1/λ_max decreases L monotonically for every instance of the batch.
    """
    augmented = torch.cat([features, features.new_ones(*features.shape[:-1], 1)], dim=-1).double()
    gram = augmented.transpose(1, 2) @ augmented  # (B, d+1, d+1)
    curvature = 2.0 * torch.linalg.eigvalsh(gram)[:, -1].max().item() / (features.shape[1] * channels)
    return 1.0 / curvature


def gradient_descent_trajectories(problem: LastLayerProblem, steps: int, step_size: float | None = None,
                                  start: torch.Tensor | None = None, dtype=torch.float64) -> dict:
    """K steps of gradient descent on the last layer, twice: by autograd, and by K stacked
    copies of the hand-built attention layer (:func:`gradient_step_layer`).

    start: (B, d+1, c) the weight both begin from (default zeros: a flat grey image).
    The comparison runs in ``dtype`` (float64 by default), so any difference left is
    rounding, not method (about 1e-9 in float64: :func:`gradient_step_layer` holds its
    step constant −2α/(N c) in float32). Returns numpy arrays:
      ``psnr_autograd``, ``psnr_attention``: (K + 1, B) PSNR of the fitted layer on the
        image after each step (index 0: the start);
      ``max_abs_difference``: (K + 1,) max |W_attention − W_autograd| after each step;
      ``psnr_generated``: (B,) the PSNR of the last layer Trans-INR generated, for scale;
      ``step_size``: the step used (default :func:`stable_step_size`).
    """
    features, targets = problem.features.to(dtype), problem.targets.to(dtype)
    hidden, channels, n_pixels = features.shape[-1], targets.shape[-1], features.shape[1]
    if step_size is None:
        step_size = stable_step_size(features, channels)
    weight = features.new_zeros(features.shape[0], hidden + 1, channels) if start is None else start.to(dtype)
    augmented = torch.cat([features, features.new_ones(*features.shape[:-1], 1)], dim=-1)

    def psnr(w: torch.Tensor) -> torch.Tensor:
        return psnr_per_item(augmented @ w + problem.out_bias, targets)

    layer = gradient_step_layer(hidden, channels, n_pixels, step_size).to(features)
    tokens = gradient_tokens(features, targets, weight, problem.out_bias)
    by_autograd = weight
    psnr_autograd, psnr_attention, difference = [psnr(weight)], [psnr(weight)], [0.0]
    for _ in range(steps):
        # One step each way; the reference needs autograd, the attention layer does not.
        by_autograd = gradient_descent_reference(features, targets, by_autograd, step_size, 1,
                                                 problem.out_bias)
        with torch.no_grad():
            tokens = layer(tokens)
        by_attention = weight_from_tokens(tokens, hidden, channels)
        psnr_autograd.append(psnr(by_autograd))
        psnr_attention.append(psnr(by_attention))
        difference.append((by_attention - by_autograd).abs().max().item())
    return {"psnr_autograd": torch.stack(psnr_autograd).float().cpu().numpy(),
            "psnr_attention": torch.stack(psnr_attention).float().cpu().numpy(),
            "max_abs_difference": torch.tensor(difference).numpy(),
            "psnr_generated": psnr(problem.generated.to(dtype)).float().cpu().numpy(),
            "step_size": step_size, "steps": steps}


# --------------------------------------------------------------------------------------
# 8. A race to an INR on one image: one forward pass, gradient steps, fitting from scratch
# --------------------------------------------------------------------------------------

def race_to_psnr(trans_inr, learned_init, image: torch.Tensor, scratch_steps: int = 300,
                 scratch_lr: float = 1e-3, record_every: int = 5, learned_init_steps: int | None = None) -> dict:
    """Three ways to an INR of one image, timed as ``transinr compare`` times them
    (:mod:`transinr.compare`): Trans-INR's one forward pass, Learned Init's K SGD steps
    from θ_0 (``learned_init_steps``, default its ``test_inner_steps``), and Adam from a
    random init of Trans-INR's hyponet (``scratch_steps`` steps). Scoring is not timed.

    image: (3, H, W). Returns
      ``trajectories``: label → {``steps`` (R,), ``seconds`` (R,) wall time, ``psnr`` (R, 1),
        ``procedure``}, as :func:`transinr.viz.psnr_vs_time_figure` draws them;
      ``target``: Trans-INR's PSNR on the image (dB);
      ``rows``: label → {``final_psnr``, ``seconds_to_target``, ``steps_to_target``}: when
        each method first reaches ``target`` (inf when it never does).
    """
    from .compare import feedforward_trajectory, learned_init_trajectory, scratch_trajectory, time_to_reach

    images = image.unsqueeze(0)
    trajectories = {
        "Trans-INR": feedforward_trajectory(trans_inr, images),
        "Learned Init": learned_init_trajectory(learned_init, images, learned_init_steps),
        "fitting from scratch": scratch_trajectory(trans_inr.hyponet, images, scratch_steps, scratch_lr,
                                                   record_every),
    }
    target = trajectories["Trans-INR"]["psnr"][-1][0]
    rows = {}
    for label, trajectory in trajectories.items():
        seconds, steps = time_to_reach(trajectory, torch.tensor([target]))
        rows[label] = {"final_psnr": trajectory["psnr"][-1][0], "seconds_to_target": seconds.item(),
                       "steps_to_target": steps.item(), "procedure": trajectory["procedure"]}
    return {"trajectories": trajectories, "target": target, "rows": rows}
