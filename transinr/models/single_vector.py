"""The single-vector hypernetwork: the bottleneck Trans-INR removes.

The same tokenizer and Transformer as Trans-INR read the observations, but only
one learned summary token (like ViT's [CLS]) is read out, and it is projected to
ONE latent vector z of ``latent_dim`` numbers. Every INR weight is then computed
from z alone.

How z becomes weights — chosen to differ from Trans-INR in nothing but the
bottleneck: the decoder is Trans-INR's own (per layer a learned base matrix whose
columns are modulated group-wise by vectors u_k and L2-normalised, base bias row;
:func:`~transinr.models.weight_tokens.modulate_columns`), except that the g_l
vectors u_k of layer l are a linear function of z instead of g_l separate
Transformer outputs. So a comparison with Trans-INR at equal G measures the cost
of squeezing the observations through one vector, which is the paper's argument
against prior "one latent code modulates the INR" hypernetworks.
"""

from __future__ import annotations

import torch
from torch import nn

from .transformer import TransformerEncoder
from .weight_tokens import linear_init, modulate_columns


def column_groups(layer_shapes, n_groups: int) -> list[int]:
    """g_l = min(G, out_l) per layer; each must split its layer's columns evenly."""
    groups = []
    for layer, (_, fan_out) in enumerate(layer_shapes):
        g = min(n_groups, fan_out)
        if fan_out % g:
            raise ValueError(f"hyponet layer {layer} has {fan_out} output columns, which do not split "
                             f"evenly into {g} weight groups; choose n_groups dividing {fan_out}")
        groups.append(g)
    return groups


class SingleVectorHypernet(nn.Module):
    """Observations → one latent vector z (B, latent_dim) → all INR weights.

    tokenizer / transformer: as for :class:`~transinr.models.trans_inr.TransINR`.
    n_groups: G, column groups per layer in the weight decoder (as in Trans-INR).
    """

    def __init__(self, tokenizer: nn.Module, transformer: TransformerEncoder, hyponet: nn.Module,
                 latent_dim: int, n_groups: int, token_init_std: float = 1.0):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be ≥ 1, got {latent_dim}")
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.hyponet = hyponet
        self.latent_dim = latent_dim
        dim = transformer.dim
        self.summary_token = nn.Parameter(torch.randn(1, 1, dim) * token_init_std)
        self.to_latent = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, latent_dim))
        shapes = [tuple(shape) for shape in hyponet.layer_shapes]
        self.groups = column_groups(shapes, n_groups)
        self.base = nn.ParameterList(nn.Parameter(linear_init(i - 1, o)) for i, o in shapes)
        # One linear map per layer: z → that layer's g_l modulation vectors of size in_l.
        self.heads = nn.ModuleList(nn.Linear(latent_dim, g * (i - 1)) for g, (i, _) in zip(self.groups, shapes))

    def encode(self, *observations: torch.Tensor) -> torch.Tensor:
        """Observations → z, (B, latent_dim): everything the INR will know of the signal."""
        data = self.tokenizer(*observations)
        tokens = torch.cat([self.summary_token.expand(data.shape[0], -1, -1), data], dim=1)
        return self.to_latent(self.transformer(tokens).tokens[:, 0])

    def weights_from_latent(self, z: torch.Tensor) -> list[torch.Tensor]:
        """z (B, latent_dim) → per-layer weights (B, in+1, out), a function of z alone."""
        weights = []
        for base, head, groups in zip(self.base, self.heads, self.groups):
            vectors = head(z).view(z.shape[0], groups, base.shape[0] - 1)  # (B, g, in)
            weights.append(modulate_columns(base, vectors))
        return weights

    def forward(self, *observations: torch.Tensor) -> list[torch.Tensor]:
        """Observations → per-layer INR weights (B, in+1, out)."""
        return self.weights_from_latent(self.encode(*observations))
