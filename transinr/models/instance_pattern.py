"""Instance pattern composers (Kim et al., CVPR 2023), on Trans-INR's machinery.

Only one early hyponet layer is instance-specific; every other layer is shared by
all signals and learns how to compose the instance's patterns. The weight part of
that layer is a low-rank product

    W = U V,   U ∈ R^{in × r} generated per instance,   V ∈ R^{r × out} shared,

with U's r columns read from r weight tokens of the same Transformer as Trans-INR
(LayerNorm + Linear(dim → in) per token). The bias row stays the learned base bias.
The rank r is the config's ``n_groups`` (the authors' own configs name it so too).

Which layer: the authors' released image configs compose layer 1 (the first
hidden → hidden layer, after the layer reading the Fourier features); ``pattern_layer``
chooses another.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .trans_inr import TransINR
from .transformer import TransformerEncoder
from .weight_tokens import WeightTokens


class PatternComposerTokens(WeightTokens):
    """Weight tokens for one low-rank instance-specific layer; the rest shared.

    Reuses :class:`WeightTokens` (learned tokens, base weights, LayerNorm + Linear
    heads) with ``generated_layers=[pattern_layer]`` and ``n_groups=rank``; only the
    decoding of the pattern layer differs. Its base weight rows are not used (the
    composed product replaces them), its bias row is.
    """

    def __init__(self, layer_shapes, rank: int, dim: int, pattern_layer: int, token_init_std: float = 1.0):
        n_layers = len(layer_shapes)
        if not 0 <= pattern_layer < n_layers:
            raise ValueError(f"pattern_layer {pattern_layer} is not a layer of this {n_layers}-layer hyponet "
                             f"(expected 0 … {n_layers - 1})")
        super().__init__(layer_shapes, rank, dim, generated_layers=[pattern_layer], token_init_std=token_init_std)
        self.pattern_layer = pattern_layer
        fan_in, fan_out = self.layer_shapes[pattern_layer][0] - 1, self.layer_shapes[pattern_layer][1]
        self.rank = self.groups[pattern_layer]
        # Scaled so that W = U V starts near nn.Linear's scale when U's entries are O(1)
        # (they leave a LayerNorm + Linear head).
        self.shared_factor = nn.Parameter(torch.randn(self.rank, fan_out) / math.sqrt(self.rank * fan_in))

    def compose(self, tokens: torch.Tensor) -> torch.Tensor:
        """The instance factor U from the pattern tokens: (B, r, dim) → (B, in, r)."""
        return self.heads[str(self.pattern_layer)](tokens).transpose(1, 2)

    def decode(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """tokens: (B, r, dim) → weights, per layer (B, in_l + 1, out_l)."""
        batch = tokens.shape[0]
        weights = []
        for layer, base in enumerate(self.base):
            if layer == self.pattern_layer:
                weight = self.compose(tokens) @ self.shared_factor  # (B, in, out), rank ≤ r
                bias = base[-1:].expand(batch, 1, -1)
                weights.append(torch.cat([weight, bias], dim=1))
            else:
                weights.append(base.unsqueeze(0).expand(batch, -1, -1))
        return weights


class InstancePatternComposer(TransINR):
    """Trans-INR whose weight tokens only write a low-rank factor of one layer."""

    def __init__(self, tokenizer: nn.Module, transformer: TransformerEncoder, hyponet: nn.Module,
                 rank: int, pattern_layer: int = 1, token_init_std: float = 1.0):
        # TransINR.__init__ would build full weight tokens only to replace them; set the
        # same attributes directly so that TransINR.run (data + weight tokens through
        # the Transformer, then decode) serves this model unchanged.
        nn.Module.__init__(self)
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.hyponet = hyponet
        self.weight_tokens = PatternComposerTokens(hyponet.layer_shapes, rank, transformer.dim, pattern_layer,
                                                   token_init_std)
