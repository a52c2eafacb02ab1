"""Concatenation fusion: f = W[z_1; ...; z_M] + b through a linear head."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion, linear_head_params, ordered, split_bias


@MODELS.register_module()
class ConcatFusion(BaseFusion):
    """Concatenates the features in config order; any number of modalities.

    Analytic logits: ``s_m = W_m z_m + b / M`` with ``W_m`` the head's column
    block of modality m.
    """

    supports_analytic = True

    def __init__(self, in_channels: Dict[str, int], init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        self.out_channels = sum(self.in_channels.values())

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        feats = ordered(features, self.modalities)
        return feats[0] if len(feats) == 1 else torch.cat(feats, dim=1)

    def analytic_logits(self, features: Dict[str, torch.Tensor],
                        head: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
        weight, bias = linear_head_params(head, self)
        bias = split_bias(bias, len(self.modalities))
        logits, start = {}, 0
        for m in self.modalities:
            stop = start + self.in_channels[m]
            if m in features:  # a pass may encode only some modalities
                logits[m] = F.linear(features[m], weight[:, start:stop], bias)
            start = stop
        return logits
