"""Trans-INR: data tokens and weight tokens through one Transformer → INR weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .transformer import TransformerEncoder
from .weight_tokens import WeightTokens


@dataclass
class TransINROutput:
    """weights: per hyponet layer (B, in+1, out).
    attention: per Transformer layer (B, heads, N, N), when asked; tokens are the
      data tokens first, then the weight tokens.
    layer_weights: the INR decoded after every Transformer layer, when asked — a
      list over depth of weight lists (the last equals ``weights``).
    """

    weights: list[torch.Tensor]
    attention: list[torch.Tensor] | None = None
    layer_weights: list[list[torch.Tensor]] | None = None


class TransINR(nn.Module):
    """A meta-learner that writes a hyponet's weights in one forward pass.

    tokenizer: observations → (B, n_data, dim); its ``forward`` takes the
      observation tensors (an image batch, or rgb + rays for posed views).
    hyponet: the INR recipe (``layer_shapes`` and ``forward(coords, weights)``).
    """

    def __init__(self, tokenizer: nn.Module, transformer: TransformerEncoder, hyponet: nn.Module,
                 n_groups: int, generated_layers=None, token_init_std: float = 1.0):
        super().__init__()
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.hyponet = hyponet
        self.weight_tokens = WeightTokens(hyponet.layer_shapes, n_groups, transformer.dim, generated_layers,
                                          token_init_std)

    def forward(self, *observations: torch.Tensor) -> list[torch.Tensor]:
        """Observations → per-layer INR weights (B, in+1, out)."""
        return self.run(*observations).weights

    def run(self, *observations: torch.Tensor, return_attention: bool = False,
            return_layer_weights: bool = False) -> TransINROutput:
        data = self.tokenizer(*observations)
        n_data = data.shape[1]
        tokens = torch.cat([data, self.weight_tokens.initial(data.shape[0])], dim=1)
        n_weight = tokens.shape[1] - n_data
        # Only the weight tokens' outputs are decoded: unless every token is asked for, the
        # last block updates those alone (the same weights, less work).
        every_token = return_attention or return_layer_weights
        encoded = self.transformer(tokens, return_attention=return_attention, return_hidden=return_layer_weights,
                                   keep_last=None if every_token else n_weight)
        weights = self.weight_tokens.decode(encoded.tokens[:, -n_weight:])
        layer_weights = None
        if return_layer_weights:
            layer_weights = [self.weight_tokens.decode(h[:, n_data:]) for h in encoded.hidden]
        return TransINROutput(weights, encoded.attention, layer_weights)
