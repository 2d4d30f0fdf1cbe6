"""Weight tokens: how a Transformer's output tokens become an INR's weights.

This is the one implementation of the mechanism; Trans-INR uses it for image
hyponets and NeRF hyponets alike (and the instance-pattern variant for a subset
of layers).

For hyponet layer l with weight W_l of shape (in_l + 1, out_l):
  * g_l = min(G, out_l) learned tokens enter the Transformer;
  * each output token goes through LayerNorm + Linear(dim → in_l), giving u_k;
  * column j of the weight part is ``normalize(W̄_l[:in_l, j] ⊙ u_{group(j)})``
    (L2 over the input dimension), columns split evenly over the g_l groups;
  * the bias row is the learned base bias, shared by every instance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def linear_init(fan_in: int, fan_out: int) -> torch.Tensor:
    """A (fan_in + 1, fan_out) weight with its bias row, initialised as nn.Linear does."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(fan_in + 1, fan_out).uniform_(-bound, bound)


def modulated_columns(base: torch.Tensor, group_vectors: torch.Tensor) -> torch.Tensor:
    """W̄ ⊙ u before normalisation: every column j of the base's weight part scaled,
    element by element, by the vector of its group.

    base: (in + 1, out) with its bias row last; group_vectors: (B, g, in), ``out``
    divisible by g (column j belongs to group j // (out / g)). Returns (B, in, out).
    """
    fan_in = base.shape[0] - 1
    batch, groups, _ = group_vectors.shape
    # The base's columns as (in, g, out / g) against the vectors as (B, in, g, 1): the
    # product broadcasts each vector over its group's columns without a copy per column.
    columns = base[:fan_in].reshape(fan_in, groups, base.shape[1] // groups)
    return (columns * group_vectors.transpose(1, 2).unsqueeze(-1)).view(batch, fan_in, base.shape[1])


def modulate_columns(base: torch.Tensor, group_vectors: torch.Tensor) -> torch.Tensor:
    """Build one layer's weights from its base matrix and per-group vectors.

    base: (in + 1, out), the learned base weight with its bias row last.
    group_vectors: (B, g, in), one vector per column group; ``out`` must divide by g.
    Returns (B, in + 1, out): normalised modulated columns, base bias row.
    """
    fan_in = base.shape[0] - 1
    weight = F.normalize(modulated_columns(base, group_vectors), dim=1)
    bias = base[fan_in:].expand(group_vectors.shape[0], 1, -1)
    return torch.cat([weight, bias], dim=1)


class WeightTokens(nn.Module):
    """Learned initial weight tokens, base weights, and the heads that decode them.

    layer_shapes: the hyponet's (in_l + 1, out_l) per layer.
    n_groups: G, the most tokens any one layer gets (a layer gets min(G, out_l)).
    generated_layers: indices of the layers whose weights come from tokens; the
      others use their base weights for every instance (all layers by default).
    token_init_std: scale of the initial tokens φ_0. The paper draws them from N(0, 1),
      which makes the groups of a layer start distinct (a small scale starts every
      group vector of a layer nearly equal, since the heads' LayerNorm removes scale).
    """

    def __init__(self, layer_shapes, n_groups: int, dim: int, generated_layers=None,
                 token_init_std: float = 1.0):
        super().__init__()
        self.layer_shapes = [tuple(shape) for shape in layer_shapes]
        if generated_layers is None:
            generated_layers = range(len(self.layer_shapes))
        self.generated_layers = sorted(set(generated_layers))
        self.base = nn.ParameterList(nn.Parameter(linear_init(i - 1, o)) for i, o in self.layer_shapes)
        self.groups: dict[int, int] = {}
        for layer in self.generated_layers:
            fan_out = self.layer_shapes[layer][1]
            groups = min(n_groups, fan_out)
            if fan_out % groups:
                raise ValueError(
                    f"hyponet layer {layer} has {fan_out} output columns, which do not split "
                    f"evenly into {groups} weight groups; choose n_groups dividing {fan_out}"
                )
            self.groups[layer] = groups
        self.n_tokens = sum(self.groups.values())
        self.tokens = nn.Parameter(torch.randn(self.n_tokens, dim) * token_init_std)
        self.heads = nn.ModuleDict({
            str(layer): nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, self.layer_shapes[layer][0] - 1))
            for layer in self.generated_layers
        })

    def token_slices(self) -> dict[int, slice]:
        """Which positions of the weight-token block belong to each generated layer."""
        slices, start = {}, 0
        for layer in self.generated_layers:
            slices[layer] = slice(start, start + self.groups[layer])
            start += self.groups[layer]
        return slices

    def initial(self, batch: int) -> torch.Tensor:
        """The learned initial tokens φ_0, (B, n_tokens, dim)."""
        return self.tokens.unsqueeze(0).expand(batch, -1, -1)

    def decode(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """tokens: (B, n_tokens, dim) → weights, per layer (B, in_l + 1, out_l)."""
        batch = tokens.shape[0]
        slices = self.token_slices()
        weights = []
        for layer, base in enumerate(self.base):
            if layer in slices:
                vectors = self.heads[str(layer)](tokens[:, slices[layer]])  # (B, g, in)
                weights.append(modulate_columns(base, vectors))
            else:
                weights.append(base.unsqueeze(0).expand(batch, -1, -1))
        return weights

    def trace(self, tokens: torch.Tensor, layer: int, group: int) -> dict[str, torch.Tensor]:
        """Every step from one output weight token to its columns of W_l, as ``decode``
        takes them (the same head, the same modulation, the same normalisation).

        tokens: (B, n_tokens, dim), the Transformer's output at the weight-token positions.
        With d = in_l and c = out_l / g_l columns per group, returns:
          ``token``: (B, dim) the output token of group ``group`` of layer ``layer``;
          ``u``: (B, d) LayerNorm + Linear of it;
          ``base``: (d, c) the group's columns of the base matrix W̄_l (bias row left out);
          ``modulated``: (B, d, c) W̄ ⊙ u;
          ``columns``: (B, d, c) each column L2-normalised over d — the group's columns of
            the generated weight (rows :d of ``decode(tokens)[layer]``);
          ``column_indices``: (c,) where those columns sit in W_l.
        """
        if layer not in self.groups:
            raise ValueError(f"INR layer {layer} has no weight tokens; generated layers: {self.generated_layers}")
        if not 0 <= group < self.groups[layer]:
            raise ValueError(f"INR layer {layer} has {self.groups[layer]} weight groups; got group {group}")
        vectors = self.heads[str(layer)](tokens[:, self.token_slices()[layer]])  # (B, g, d)
        base = self.base[layer]
        modulated = modulated_columns(base, vectors)  # (B, d, out)
        width = base.shape[1] // self.groups[layer]
        columns = slice(group * width, (group + 1) * width)
        return {"token": tokens[:, self.token_slices()[layer]][:, group], "u": vectors[:, group],
                "base": base[:-1, columns], "modulated": modulated[..., columns],
                "columns": F.normalize(modulated, dim=1)[..., columns],
                "column_indices": torch.arange(base.shape[1])[columns]}
