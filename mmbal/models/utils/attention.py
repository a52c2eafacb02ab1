"""Masked attention blocks for step features, shared by the Transformer encoder and fusions.

Built from ``nn.Linear`` and ``nn.LayerNorm`` only (no ``nn.MultiheadAttention``),
so every parameter is a plain attribute that ``torch.func.functional_call``
swaps, and re-running each layer's ``reset_parameters`` in module order
reproduces the construction-time draw (``BaseEncoder.init_default_weights``).
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmbal.structures import key_padding


def sinusoidal_positions(length: int, channels: int, like: torch.Tensor) -> torch.Tensor:
    """The fixed sine/cosine position code ``(length, channels)`` of "Attention is all you need"."""
    pos = torch.arange(length, dtype=like.dtype, device=like.device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, channels, 2, dtype=like.dtype, device=like.device)
                     * (-math.log(10000.0) / channels))
    code = like.new_zeros(length, channels)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq)[:, :channels // 2]
    return code


class PositionalProjection(nn.Module):
    """``Linear(x) + position code``: steps ``(B, T, D)`` -> ``(B, T, C)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        return y + sinusoidal_positions(y.shape[1], y.shape[2], y)


class MaskedAttention(nn.Module):
    """Multi-head scaled dot-product attention that ignores padded keys.

    A sample without real keys (an absent modality) attends to all its steps
    and its output is zeroed, so it contributes nothing and stays finite.
    """

    def __init__(self, embed_dims: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'MaskedAttention: embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.num_heads, self.dropout = num_heads, dropout
        self.q = nn.Linear(embed_dims, embed_dims)
        self.k = nn.Linear(embed_dims, embed_dims)
        self.v = nn.Linear(embed_dims, embed_dims)
        self.out = nn.Linear(embed_dims, embed_dims)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor,
                key_mask: torch.Tensor) -> torch.Tensor:
        """query (B, Tq, C), key (B, Tk, C), key_mask (B, Tk) True = real -> (B, Tq, C)."""
        ignore, has_keys = key_padding(key_mask)
        attend = ~ignore[:, None, None, :]
        y = F.scaled_dot_product_attention(
            self._heads(self.q(query)), self._heads(self.k(key)), self._heads(self.v(key)),
            attn_mask=attend, dropout_p=self.dropout if self.training else 0.0)
        y = self.out(y.transpose(1, 2).flatten(2))
        return y * has_keys.to(y.dtype).view(-1, 1, 1)


class AttentionBlock(nn.Module):
    """Pre-norm Transformer block: ``x + Attn(LN(x), LN(ctx))``, then ``+ FFN(LN(.))``.

    Self-attention (the Transformer encoder, the shared fusion transformer), or
    with ``cross=True`` cross-attention from ``x`` to a ``context`` sequence
    (MulT's cross-modal block, which normalises both sides, each with its own
    LayerNorm).
    """

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int,
                 dropout: float = 0.0, cross: bool = False) -> None:
        super().__init__()
        self.cross = cross
        self.norm_query = nn.LayerNorm(embed_dims)
        if cross:
            self.norm_context = nn.LayerNorm(embed_dims)
        self.attn = MaskedAttention(embed_dims, num_heads, dropout)
        self.norm_ffn = nn.LayerNorm(embed_dims)
        self.ffn = nn.Sequential(nn.Linear(embed_dims, feedforward_channels), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(feedforward_channels, embed_dims))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, context: Optional[torch.Tensor] = None,
                context_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, T, C) with mask (B, T); context (B, S, C) and its mask for ``cross`` only."""
        if (context is None) == self.cross:
            raise ValueError(f'AttentionBlock(cross={self.cross}) got '
                             f'{"no" if context is None else "a"} context')
        q = self.norm_query(x)
        if self.cross:
            kv, kv_mask = self.norm_context(context), context_mask
        else:
            kv, kv_mask = q, mask
        x = x + self.drop(self.attn(q, kv, kv_mask))
        return x + self.drop(self.ffn(self.norm_ffn(x)))
