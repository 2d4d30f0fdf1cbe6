"""This kit's Trans-INR weights in the official implementation's layout, and back.

The two compute the same function with the same numbers in different places:

* **Weight groups.** A hyponet layer with ``out`` columns and ``g`` groups: this kit gives
  group ``k`` the ``out / g`` adjacent columns ``k·(out/g) … (k+1)·(out/g) - 1``
  (``repeat_interleave``); the official code gives it every ``g``-th column ``k, k + g, …``
  (``repeat``). Official column ``j`` is kit column ``(j mod g)·(out/g) + j div g``. Reordering
  a layer's columns reorders its outputs, so the next layer's input rows (and the
  rows its weight-token head writes) are reordered the same way; the bias row stays last.
* **Patch flattening.** This kit flattens a patch as (row, column, channel); the official
  tokenizer uses ``F.unfold``, which gives (channel, row, column). The tokenizer's Linear
  reads its input columns in that order.
* **Attention.** One fused ``qkv`` Linear here (rows: q, then k, then v); the official code
  has ``to_q`` and ``to_kv`` (k, then v), both without bias.
* Parameters the official model lacks (an attention ``qkv`` bias, a positional embedding of
  posed-view tokens, where a config turns them on) must be zero for the two to agree.

Nothing here imports the official code: the mapping is plain tensors and names, so it
is tested without it (tests/test_benchmarks.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def group_permutation(fan_out: int, groups: int) -> torch.Tensor:
    """(fan_out,) ``perm`` with official column ``j`` = kit column ``perm[j]``."""
    if fan_out % groups:
        raise ValueError(f"{fan_out} columns do not split into {groups} groups")
    j = torch.arange(fan_out)
    return (j % groups) * (fan_out // groups) + j // groups


def patch_permutation(patch_size: int, channels: int) -> torch.Tensor:
    """(p·p·C,) ``perm`` with official patch feature ``q`` (channel, row, column) = kit feature
    ``perm[q]`` (row, column, channel)."""
    c, i, j = torch.meshgrid(torch.arange(channels), torch.arange(patch_size), torch.arange(patch_size),
                             indexing="ij")
    return ((i * patch_size + j) * channels + c).flatten()


@dataclass
class Layout:
    """What the mapping needs to know of a kit Trans-INR (see :meth:`of`)."""

    blocks: int
    inner_dim: int  # heads × head_dim
    patch_size: int
    channels: int  # 3 for images, 9 for posed views (rgb ‖ ray origin ‖ ray direction)
    views: bool  # a posed-view tokenizer (no positional embedding in the official code)
    layer_names: list[str]  # the official hyponet's parameter names, layer by layer
    layer_groups: list[int]  # g_l of every hyponet layer
    layer_fan_out: list[int]

    @classmethod
    def of(cls, model) -> "Layout":
        """The layout of a kit ``TransINR`` whose every hyponet layer is generated."""
        tokens = model.weight_tokens
        if tokens.generated_layers != list(range(len(tokens.layer_shapes))):
            raise ValueError("the official Trans-INR generates every hyponet layer; this model does not")
        hyponet = model.hyponet
        views = hasattr(model.tokenizer, "tokens_per_view")
        image_tokenizer = model.tokenizer.image if views else model.tokenizer
        depth = len(tokens.layer_shapes)
        if views:  # the official NeRF: wb0 … wb{depth-2}, then one (rgb, σ) output layer
            names = [f"wb{i}" for i in range(depth - 1)] + ["rgb_density_fc"]
        else:
            names = [f"wb{i}" for i in range(depth)]
        attention = model.transformer.blocks[0].attn
        return cls(blocks=len(model.transformer.blocks), inner_dim=attention.n_heads * attention.head_dim,
                   patch_size=image_tokenizer.patch_size,
                   channels=image_tokenizer.project.in_features // image_tokenizer.patch_size**2,
                   views=views, layer_names=names,
                   layer_groups=[tokens.groups[layer] for layer in range(depth)],
                   layer_fan_out=[shape[1] for shape in tokens.layer_shapes])

    @property
    def tokenizer_prefix(self) -> str:
        return "tokenizer.image." if self.views else "tokenizer."

    def column_permutations(self) -> list[torch.Tensor]:
        return [group_permutation(o, g) for o, g in zip(self.layer_fan_out, self.layer_groups)]

    def kit_only_names(self, kit_state: dict) -> list[str]:
        """Kit parameters with no official counterpart (present only where a config turns them on)."""
        names = [f"transformer.blocks.{i}.attn.qkv.bias" for i in range(self.blocks)]
        if self.views:
            names.append(self.tokenizer_prefix + "position")
        return [name for name in names if name in kit_state]


def _inverse(perm: torch.Tensor) -> torch.Tensor:
    return torch.argsort(perm)


def _rows_with_bias(perm: torch.Tensor | None, fan_in: int) -> torch.Tensor:
    """Row order of a (fan_in + 1, out) weight whose inputs come in ``perm`` order; bias row last."""
    rows = torch.arange(fan_in) if perm is None else perm
    return torch.cat([rows, torch.tensor([fan_in])])


def official_columns(weights: list[torch.Tensor], layout: Layout) -> list[torch.Tensor]:
    """Generated kit weights, per layer (B, in+1, out), reordered as the official code orders
    them: each layer's columns by its groups, its input rows by the previous layer's."""
    out, previous = [], None
    for weight, perm in zip(weights, layout.column_permutations()):
        rows = _rows_with_bias(previous, weight.shape[-2] - 1).to(weight.device)
        out.append(weight[..., rows, :][..., perm.to(weight.device)])
        previous = perm
    return out


def _pairs(layout: Layout) -> list[tuple[str, str]]:
    """(kit name, official name) of every parameter that is copied without reordering."""
    tk = layout.tokenizer_prefix
    pairs = [(tk + "project.bias", "tokenizer.prefc.bias"), ("weight_tokens.tokens", "wtokens")]
    for i in range(layout.blocks):
        kit, official = f"transformer.blocks.{i}.", f"transformer_encoder.layers.{i}."
        pairs += [(kit + "attn_norm.weight", official + "0.norm.weight"),
                  (kit + "attn_norm.bias", official + "0.norm.bias"),
                  (kit + "attn.out.weight", official + "0.fn.to_out.0.weight"),
                  (kit + "attn.out.bias", official + "0.fn.to_out.0.bias"),
                  (kit + "mlp_norm.weight", official + "1.norm.weight"),
                  (kit + "mlp_norm.bias", official + "1.norm.bias")]
        for index in (0, 3):  # Linear, GELU, Dropout, Linear, Dropout in both
            for kind in ("weight", "bias"):
                pairs.append((kit + f"mlp.{index}.{kind}", official + f"1.fn.net.{index}.{kind}"))
    for layer, name in enumerate(layout.layer_names):
        for kind in ("weight", "bias"):  # the head's LayerNorm
            pairs.append((f"weight_tokens.heads.{layer}.0.{kind}", f"wtoken_postfc.{name}.0.{kind}"))
    return pairs


def kit_to_official(kit_state: dict, layout: Layout, require_zero_extras: bool = True) -> dict:
    """A kit state dict → the official model's state dict (same tensors, reordered).

    ``require_zero_extras``: refuse kit-only parameters that are not zero (they would make
    the two models differ); off to map gradients, which need not vanish there.
    """
    for name in layout.kit_only_names(kit_state):
        if require_zero_extras and kit_state[name].abs().max() > 0:
            raise ValueError(f"{name} has no counterpart in the official model and is not zero; "
                             f"zero it (or turn it off in the config) before mapping")
    out = {official: kit_state[kit] for kit, official in _pairs(layout)}
    tk = layout.tokenizer_prefix
    out["tokenizer.prefc.weight"] = kit_state[tk + "project.weight"][:, patch_permutation(
        layout.patch_size, layout.channels)]
    if not layout.views:
        out["tokenizer.posemb"] = kit_state[tk + "position"][0]
    for i in range(layout.blocks):
        qkv = kit_state[f"transformer.blocks.{i}.attn.qkv.weight"]
        out[f"transformer_encoder.layers.{i}.0.fn.to_q.weight"] = qkv[:layout.inner_dim]
        out[f"transformer_encoder.layers.{i}.0.fn.to_kv.weight"] = qkv[layout.inner_dim:]
    previous = None
    for layer, (name, perm) in enumerate(zip(layout.layer_names, layout.column_permutations())):
        base = kit_state[f"weight_tokens.base.{layer}"]
        out[f"base_params.{name}"] = base[_rows_with_bias(previous, base.shape[0] - 1)][:, perm]
        head = f"weight_tokens.heads.{layer}.1."
        rows = slice(None) if previous is None else previous
        out[f"wtoken_postfc.{name}.1.weight"] = kit_state[head + "weight"][rows]
        out[f"wtoken_postfc.{name}.1.bias"] = kit_state[head + "bias"][rows]
        previous = perm
    return out


def official_to_kit(official_state: dict, layout: Layout, kit_template: dict) -> dict:
    """The inverse of :func:`kit_to_official`; kit-only parameters (shapes from
    ``kit_template``, a kit state dict) come back as zeros."""
    out = {kit: official_state[official] for kit, official in _pairs(layout)}
    tk = layout.tokenizer_prefix
    out[tk + "project.weight"] = official_state["tokenizer.prefc.weight"][:, _inverse(patch_permutation(
        layout.patch_size, layout.channels))]
    if not layout.views:
        out[tk + "position"] = official_state["tokenizer.posemb"][None]
    for i in range(layout.blocks):
        out[f"transformer.blocks.{i}.attn.qkv.weight"] = torch.cat([
            official_state[f"transformer_encoder.layers.{i}.0.fn.to_q.weight"],
            official_state[f"transformer_encoder.layers.{i}.0.fn.to_kv.weight"]])
    previous = None
    for layer, (name, perm) in enumerate(zip(layout.layer_names, layout.column_permutations())):
        base = official_state[f"base_params.{name}"]
        rows = _inverse(_rows_with_bias(previous, base.shape[0] - 1))
        out[f"weight_tokens.base.{layer}"] = base[:, _inverse(perm)][rows]
        head = f"wtoken_postfc.{name}.1."
        head_rows = slice(None) if previous is None else _inverse(previous)
        out[f"weight_tokens.heads.{layer}.1.weight"] = official_state[head + "weight"][head_rows]
        out[f"weight_tokens.heads.{layer}.1.bias"] = official_state[head + "bias"][head_rows]
        previous = perm
    for name in layout.kit_only_names(kit_template):
        out[name] = torch.zeros_like(kit_template[name])
    return out
