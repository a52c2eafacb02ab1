"""Transformer encoder for feature sequences, one layer per stage."""
from typing import List, Optional

import torch
from torch import nn

from mmbal.models.utils.attention import AttentionBlock, PositionalProjection
from mmbal.registry import MODELS
from mmbal.structures import join_steps, split_steps
from .sequence_encoder import SequenceEncoder, StepModule


class SelfAttentionStep(nn.Module):
    """One pre-norm self-attention block on a step tensor; padded steps are never attended."""

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int,
                 dropout: float) -> None:
        super().__init__()
        self.block = AttentionBlock(embed_dims, num_heads, feedforward_channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, mask = split_steps(h)
        return join_steps(self.block(x, mask), mask)


@MODELS.register_module()
class TransformerEncoder(SequenceEncoder):
    """Linear projection plus sine position code, then ``num_layers`` self-attention blocks.

    Padded steps are masked out of every attention (key padding) and out of
    the pooling, the mean over real steps. Stages: one per block, the input
    projection at the front of stage 0; stage ``i`` outputs the step tensor
    ``(B, T, embed_dims + 1)``. AIM's CMU-MOSI setting is ``num_layers=3``.

    Init (construction and ``init_weights``): PyTorch's Linear and LayerNorm
    defaults, nothing on top (the blocks are built from them only).

    Args:
        in_channels: Feature size of each input step.
        embed_dims: Width of the blocks, the pooled feature size.
        num_layers: Number of blocks (= stages).
        num_heads: Attention heads; must divide ``embed_dims``.
        feedforward_channels: Hidden size of each block's FFN (default 4 x embed_dims).
        dropout: Dropout in attention, FFN and residual branches.
        keep_steps: See ``SequenceEncoder``.
    """

    def __init__(self, in_channels: int, embed_dims: int = 64, num_layers: int = 3,
                 num_heads: int = 4, feedforward_channels: Optional[int] = None,
                 dropout: float = 0.0, keep_steps: bool = False, init_cfg=None) -> None:
        super().__init__(in_channels, keep_steps, init_cfg)
        if num_layers < 1:
            raise ValueError(f'TransformerEncoder: num_layers={num_layers}; expected >= 1')
        ffn = 4 * embed_dims if feedforward_channels is None else feedforward_channels
        self.projection = StepModule(PositionalProjection(in_channels, embed_dims))
        self.layers = nn.ModuleList(
            SelfAttentionStep(embed_dims, num_heads, ffn, dropout) for _ in range(num_layers))
        self.out_channels = embed_dims

    def stage_members(self) -> List[List[nn.Module]]:
        return [[self.projection, self.layers[0]]] + [[layer] for layer in self.layers[1:]]
