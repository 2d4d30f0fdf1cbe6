"""Pre-norm Transformer encoder.

Each block updates the token stream residually, ``x ← x + Attn(LN(x))`` then
``x ← x + MLP(LN(x))``. Read with weight tokens in the stream, every block is one
learned update step of those tokens — the bridge between Trans-INR and
gradient-based meta-learning (see ``transinr.analysis``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with one fused QKV projection.

    The fused projection is the paper's separate query, key and value maps stacked
    into one matrix (the same function, one matmul). They have no bias in the paper;
    ``qkv_bias=True`` adds one.

    Runs on ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels
    where available); when the attention weights are asked for, the same maths is
    done explicitly so they can be returned.
    """

    def __init__(self, dim: int, n_heads: int, head_dim: int, dropout: float = 0.0, qkv_bias: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = head_dim
        inner = n_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.out = nn.Linear(inner, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """x: (B, N, D) → (B, N, D), and attention (B, heads, N, N) if asked."""
        batch, n_tokens, _ = x.shape
        qkv = self.qkv(x).view(batch, n_tokens, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        dropout = self.dropout if self.training else 0.0
        attention = None
        if return_attention:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            attention = scores.softmax(dim=-1)
            mixed = F.dropout(attention, dropout, self.training) @ v
        else:
            mixed = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        mixed = mixed.transpose(1, 2).reshape(batch, n_tokens, -1)
        return self.out(mixed), attention


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__(
            nn.Linear(dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )


class TransformerBlock(nn.Module):
    """One pre-norm residual block: attention then MLP, each behind a LayerNorm."""

    def __init__(self, dim: int, n_heads: int, head_dim: int, mlp_dim: int, dropout: float = 0.0,
                 qkv_bias: bool = False):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, n_heads, head_dim, dropout, qkv_bias)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """x: (B, N, D) → (B, N, D), attention (B, heads, N, N) or None."""
        update, attention = self.attn(self.attn_norm(x), return_attention)
        x = x + update
        x = x + self.mlp(self.mlp_norm(x))
        return x, attention


@dataclass
class EncoderOutput:
    """What a Transformer pass hands back.

    tokens: (B, N, D) final tokens.
    hidden: per block, the tokens after it — ``depth`` tensors (B, N, D) — when asked.
    attention: per block, (B, heads, N, N) attention weights — when asked.
    """

    tokens: torch.Tensor
    hidden: list[torch.Tensor] | None = None
    attention: list[torch.Tensor] | None = None


class TransformerEncoder(nn.Module):
    """A stack of pre-norm blocks with no final norm (the weight heads normalise)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        n_heads: int,
        head_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
    ):
        super().__init__()
        self.dim = dim
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, n_heads, head_dim, mlp_dim, dropout, qkv_bias) for _ in range(depth)
        )

    def forward(
        self,
        x: torch.Tensor,
        return_attention: bool = False,
        return_hidden: bool = False,
    ) -> EncoderOutput:
        """x: (B, N, D). Returns an :class:`EncoderOutput`."""
        hidden = [] if return_hidden else None
        attention = [] if return_attention else None
        for block in self.blocks:
            x, attn = block(x, return_attention)
            if return_hidden:
                hidden.append(x)
            if return_attention:
                attention.append(attn)
        return EncoderOutput(tokens=x, hidden=hidden, attention=attention)
