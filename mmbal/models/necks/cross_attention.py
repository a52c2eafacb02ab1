"""MulT-style cross-modal attention fusion (Tsai et al., ACL 2019), one stream per modality pair."""
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from mmbal.models.utils.attention import AttentionBlock
from mmbal.registry import MODELS
from mmbal.structures import masked_mean
from .step_fusion import StepFusion


@MODELS.register_module()
class CrossAttentionFusion(StepFusion):
    """For every target m and source n != m, ``num_layers`` cross-modal blocks m <- n.

    A block is ``x + Attn(LN(x), LN(y))`` then ``+ FFN(LN(.))`` with queries
    from m's steps ``x`` and keys/values from n's steps ``y`` (padded steps of
    n are never attended). Each target's streams are concatenated per step
    and averaged over m's real steps; the output concatenates the targets:
    ``(B, len(targets) * (M - 1) * embed_dims)``. MulT's self-attention
    transformer after the streams is left out (ours).

    Per-modality logits: no analytic decomposition (use ``'probe'``). A probe
    of m zeroes the other step tensors, i.e. those modalities are absent: m's
    own streams keep its residual path, the other targets pool to zero. A
    modality that is no target is then not seen by its own probe: that probe
    is constant and raises the degenerate-probe error.

    Args:
        in_channels: Per-step feature size per modality.
        embed_dims: Width of every block.
        num_heads: Attention heads.
        num_layers: Blocks per stream.
        feedforward_channels: FFN hidden size (default 4 x embed_dims).
        dropout: Dropout in attention, FFN and residual branches.
        targets: The target modalities (default: all, MulT's setting).
    """

    def __init__(self, in_channels: Dict[str, int], embed_dims: int = 32, num_heads: int = 4,
                 num_layers: int = 1, feedforward_channels: Optional[int] = None,
                 dropout: float = 0.0, targets: Optional[Sequence[str]] = None,
                 init_cfg=None) -> None:
        super().__init__(in_channels, embed_dims, init_cfg)
        self.targets = list(self.modalities if targets is None else targets)
        if not self.targets:
            raise ValueError('CrossAttentionFusion: targets is empty')
        for m in self.targets:
            self._check_modality(m, 'targets')
        ffn = 4 * embed_dims if feedforward_channels is None else feedforward_channels
        self.streams = nn.ModuleDict({
            self._stream(m, n): nn.ModuleList(
                AttentionBlock(embed_dims, num_heads, ffn, dropout, cross=True)
                for _ in range(num_layers))
            for m in self.targets for n in self.modalities if n != m})
        self.out_channels = len(self.targets) * (len(self.modalities) - 1) * embed_dims

    @staticmethod
    def _stream(target: str, source: str) -> str:
        return f'{source}_to_{target}'

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        steps = self.project(features)
        pooled = []
        for m in self.targets:
            x, mask = steps[m]
            outs = []
            for n in self.modalities:
                if n == m:
                    continue
                y, y_mask = steps[n]
                h = x
                for block in self.streams[self._stream(m, n)]:
                    h = block(h, mask, y, y_mask)
                outs.append(h)
            pooled.append(masked_mean(torch.cat(outs, dim=-1), mask))
        return torch.cat(pooled, dim=1)
