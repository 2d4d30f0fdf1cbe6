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

    def forward(self, x: torch.Tensor, return_attention: bool = False, n_queries: int | None = None):
        """x: (B, N, D) → (B, n, D) for the last n = ``n_queries`` tokens (all N by default),
        and attention (B, heads, n, N) if asked.

        Every token is a key and a value; only the last n are queries. Their outputs are
        the same as those of the full pass (each token's output depends on its own query
        and on all keys and values), without computing the N − n others.
        """
        batch, n_tokens, _ = x.shape
        n_queries = n_tokens if n_queries is None else n_queries
        if n_queries == n_tokens:
            qkv = self.qkv(x).view(batch, n_tokens, 3, self.n_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        else:
            # The fused projection's rows are q, then k, then v: project only what is used.
            inner = self.n_heads * self.head_dim
            weight, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, n_tokens - n_queries:], weight[:inner], None if bias is None else bias[:inner])
            q = q.view(batch, n_queries, self.n_heads, self.head_dim).transpose(1, 2)  # (B, heads, n, hd)
            kv = F.linear(x, weight[inner:], None if bias is None else bias[inner:])
            k, v = kv.view(batch, n_tokens, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.dropout if self.training else 0.0
        attention = None
        if return_attention:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            attention = scores.softmax(dim=-1)
            mixed = F.dropout(attention, dropout, self.training) @ v
        else:
            mixed = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        mixed = mixed.transpose(1, 2).reshape(batch, n_queries, -1)
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

    def forward(self, x: torch.Tensor, return_attention: bool = False, keep_last: int | None = None):
        """x: (B, N, D) → (B, n, D), attention (B, heads, n, N) or None, for the last
        n = ``keep_last`` tokens (all N by default): the others are read, not updated."""
        update, attention = self.attn(self.attn_norm(x), return_attention, keep_last)
        if keep_last is not None:
            x = x[:, x.shape[1] - keep_last:]
        x = x + update
        x = x + self.mlp(self.mlp_norm(x))
        return x, attention


@dataclass
class EncoderOutput:
    """What a Transformer pass hands back.

    tokens: (B, N, D) final tokens (B, n, D: the last n only, when the pass was asked
      to ``keep_last`` n).
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
        keep_last: int | None = None,
    ) -> EncoderOutput:
        """x: (B, N, D). Returns an :class:`EncoderOutput`.

        ``keep_last``: only the last n tokens of the output are wanted (Trans-INR reads its
        weight tokens alone). The last block then computes those only: queries, attention
        output and MLP of n tokens instead of N — the same values, less work. It cannot be
        combined with ``return_hidden`` or ``return_attention``, which show every token.
        """
        if keep_last is not None and (return_hidden or return_attention):
            raise ValueError("keep_last leaves tokens out of the last block; it cannot be combined with "
                             "return_hidden or return_attention")
        if keep_last is not None and not 0 < keep_last <= x.shape[1]:
            raise ValueError(f"keep_last must be in 1 … {x.shape[1]} (the number of tokens), got {keep_last}")
        hidden = [] if return_hidden else None
        attention = [] if return_attention else None
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            x, attn = block(x, return_attention, keep_last if index == last else None)
            if return_hidden:
                hidden.append(x)
            if return_attention:
                attention.append(attn)
        return EncoderOutput(tokens=x, hidden=hidden, attention=attention)
