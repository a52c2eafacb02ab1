"""Late fusion: the mean of per-modality linear classifiers."""
from typing import Dict, Optional

import torch
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion, ordered


@MODELS.register_module()
class LateFusion(BaseFusion):
    """``f = (1/M) sum_m h_m(z_m)`` with one ``nn.Linear`` head per modality.

    It ends in class logits, so the classifier takes no separate head.
    Analytic ``s_m = h_m(z_m)`` (G2D's setting).

    Args:
        in_channels: Feature size per modality.
        num_classes: Number of classes.
    """

    supports_analytic = True
    outputs_logits = True

    def __init__(self, in_channels: Dict[str, int], num_classes: int, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        self.out_channels = num_classes
        self.heads = nn.ModuleDict(
            {m: nn.Linear(c, num_classes) for m, c in self.in_channels.items()})

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        feats = ordered(features, self.modalities)
        logits = [self.heads[m](z) for m, z in zip(self.modalities, feats)]
        return torch.stack(logits).mean(dim=0)

    def analytic_logits(self, features: Dict[str, torch.Tensor],
                        head: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
        # Every modality present in ``features`` (a pass may encode only some).
        return {m: self.heads[m](features[m]) for m in self.modalities if m in features}
