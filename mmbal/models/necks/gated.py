"""Gated fusion: a sigmoid gate from one modality scales the other's projection."""
from typing import Dict

import torch
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion


@MODELS.register_module()
class GatedFusion(BaseFusion):
    """``out = sigmoid(W_g z_g + b_g) * (W_t z_t + b_t)`` for gate g and target t.

    Two modalities only; no analytic decomposition (use probe logits).

    Args:
        in_channels: Feature size per modality (two).
        out_channels: Size of both projections.
        gate: The modality whose projection becomes the gate.
    """

    num_modalities = 2

    def __init__(self, in_channels: Dict[str, int], out_channels: int, gate: str,
                 init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        self._check_modality(gate, 'gate')
        self.gate = gate
        self.target = next(m for m in self.modalities if m != gate)
        self.out_channels = out_channels
        self.gate_proj = nn.Linear(self.in_channels[gate], out_channels)
        self.target_proj = nn.Linear(self.in_channels[self.target], out_channels)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        gate = torch.sigmoid(self.gate_proj(features[self.gate]))
        return gate * self.target_proj(features[self.target])
