"""Squeeze-excitation fusion: a gate from all modalities rescales the concatenated features."""
from typing import Dict

import torch
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion, ordered


@MODELS.register_module()
class SEFusion(BaseFusion):
    """``z = [z_1; ...; z_M]``, ``out = z * sigmoid(W_2 ReLU(W_1 z + b_1) + b_2)``.

    The squeeze-excitation gate (Hu et al., CVPR 2018) applied to the
    concatenated pooled features; the output keeps the concatenation's size.
    Any number of modalities.

    Per-modality logits: no analytic decomposition, since every gate value
    depends on all modalities (use ``'probe'``). A probe of m zeroes the
    other features: its output is ``z_m`` gated by ``sigmoid(.)`` of the
    zero-padded concatenation, which depends on m.

    Args:
        in_channels: Pooled feature size per modality.
        reduction: The gate's bottleneck is ``max(1, sum(in_channels) // reduction)``.
    """

    def __init__(self, in_channels: Dict[str, int], reduction: int = 4, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f'SEFusion: reduction={reduction!r}; expected an int >= 1')
        self.out_channels = sum(self.in_channels.values())
        hidden = max(1, self.out_channels // reduction)
        self.squeeze = nn.Linear(self.out_channels, hidden)
        self.excite = nn.Linear(hidden, self.out_channels)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        feats = ordered(features, self.modalities)
        for m, z in zip(self.modalities, feats):
            if z.dim() != 2 or z.shape[1] != self.in_channels[m]:
                raise ValueError(f'SEFusion: the feature of {m!r} has shape {tuple(z.shape)}; '
                                 f'expected pooled features (B, {self.in_channels[m]})')
        z = torch.cat(feats, dim=1)
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(z))))
        return z * gate
