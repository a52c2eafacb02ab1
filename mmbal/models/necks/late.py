"""Late fusion: the mean of per-modality linear classifiers."""
from typing import Dict, List, Optional

import torch
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion, ordered


@MODELS.register_module()
class LateFusion(BaseFusion):
    """``f = (1/M) sum_m h_m(z_m)`` with one ``nn.Linear`` head per modality.

    It ends in class logits, so the classifier takes no separate head.
    Analytic ``s_m = h_m(z_m)`` (G2D's setting); the probe
    (``probe_is_branch``) is the same ``h_m(z_m)``, never the mean with the
    other features zeroed (that halves it and adds the other heads' biases).

    Args:
        in_channels: Feature size per modality.
        num_classes: Number of classes.
    """

    supports_analytic = True
    outputs_logits = True
    probe_is_branch = True

    def __init__(self, in_channels: Dict[str, int], num_classes: int, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        self.out_channels = num_classes
        self.heads = nn.ModuleDict(
            {m: nn.Linear(c, num_classes) for m, c in self.in_channels.items()})

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        feats = ordered(features, self.modalities)
        logits = [self.heads[m](z) for m, z in zip(self.modalities, feats)]
        return torch.stack(logits).mean(dim=0)

    def branch_outputs(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``h_m(z_m)`` of every modality present in ``features`` (a pass may encode some)."""
        return {m: self.heads[m](features[m]) for m in self.modalities if m in features}

    def branch_parameters(self, m: str) -> List[nn.Parameter]:
        """The parameters of ``h_m``."""
        self._check_modality(m, 'modality')
        return list(self.heads[m].parameters())

    def analytic_logits(self, features: Dict[str, torch.Tensor],
                        head: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
        return self.branch_outputs(features)
