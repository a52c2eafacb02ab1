"""FiLM fusion: one modality modulates the other's features."""
from typing import Dict

import torch
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion


@MODELS.register_module()
class FiLMFusion(BaseFusion):
    """``out = gamma(z_c) * z_t + beta(z_c)`` for a conditioning modality c and target t.

    ``[gamma, beta] = Linear(z_c)``; the output has the target's size. Two
    modalities only; no analytic decomposition (use probe logits).

    Args:
        in_channels: Feature size per modality (two).
        condition: The modality that produces gamma and beta.
    """

    num_modalities = 2

    def __init__(self, in_channels: Dict[str, int], condition: str, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        self._check_modality(condition, 'condition')
        self.condition = condition
        self.target = next(m for m in self.modalities if m != condition)
        self.out_channels = self.in_channels[self.target]
        self.film = nn.Linear(self.in_channels[condition], 2 * self.out_channels)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        gamma, beta = self.film(features[self.condition]).chunk(2, dim=1)
        return gamma * features[self.target] + beta
