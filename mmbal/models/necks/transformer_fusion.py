"""mmFormer-style fusion (Zhang et al., MICCAI 2022): every modality's tokens in one transformer."""
from typing import Dict, Optional

import torch
from torch import nn

from mmbal.models.utils.attention import AttentionBlock
from mmbal.registry import MODELS
from mmbal.structures import masked_mean
from .step_fusion import StepFusion


@MODELS.register_module()
class TransformerFusion(StepFusion):
    """Modality tokens (projected steps + a learned modality embedding), one shared transformer.

    The tokens of all modalities are concatenated along time with their masks
    and run through ``num_layers`` self-attention blocks shared by all
    modalities (padded tokens are never attended). The output concatenates,
    per modality in config order, the mean of its real tokens:
    ``(B, M * embed_dims)``.

    Per-modality logits: no analytic decomposition (use ``'probe'``). A
    probe of m makes the other modalities absent (their tokens are all
    padded), so it attends m's tokens only and depends on m.

    Args:
        in_channels: Per-step feature size per modality.
        embed_dims: Width of the blocks.
        num_heads: Attention heads.
        num_layers: Shared blocks.
        feedforward_channels: FFN hidden size (default 4 x embed_dims).
        dropout: Dropout in attention, FFN and residual branches.
    """

    def __init__(self, in_channels: Dict[str, int], embed_dims: int = 32, num_heads: int = 4,
                 num_layers: int = 1, feedforward_channels: Optional[int] = None,
                 dropout: float = 0.0, init_cfg=None) -> None:
        super().__init__(in_channels, embed_dims, init_cfg)
        ffn = 4 * embed_dims if feedforward_channels is None else feedforward_channels
        self.modality_embedding = nn.Embedding(len(self.modalities), embed_dims)
        self.blocks = nn.ModuleList(AttentionBlock(embed_dims, num_heads, ffn, dropout)
                                    for _ in range(num_layers))
        self.out_channels = len(self.modalities) * embed_dims

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        steps = self.project(features)
        tokens = torch.cat([x + self.modality_embedding.weight[i]
                            for i, (x, _) in enumerate(steps.values())], dim=1)
        mask = torch.cat([mask for _, mask in steps.values()], dim=1)
        for block in self.blocks:
            tokens = block(tokens, mask)
        pooled, start = [], 0
        for x, m_mask in steps.values():
            stop = start + x.shape[1]
            pooled.append(masked_mean(tokens[:, start:stop], m_mask))
            start = stop
        return torch.cat(pooled, dim=1)
