"""Sum fusion: f = sum_m (W_m z_m + b_m)."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion, linear_head_params, ordered, split_bias


@MODELS.register_module()
class SumFusion(BaseFusion):
    """Projects every modality with its own linear layer and sums the results.

    With ``out_channels = num_classes`` and no head this is the reference
    "sum" model (``f = sum_m W_m z_m + b_m``, analytic ``s_m = W_m z_m + b_m``).
    With a linear head after it, ``s_m = W_h (W_m z_m + b_m) + b_h / M``.
    Probe (``probe_is_branch``): the modality's own branch, ``W_m z_m + b_m``
    (through the head, with its full bias, when there is one), never the sum
    with the other features zeroed (that adds the other branches' biases).

    Args:
        in_channels: Feature size per modality.
        out_channels: Size of the summed vector.
    """

    supports_analytic = True
    probe_is_branch = True

    def __init__(self, in_channels: Dict[str, int], out_channels: int, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        self.out_channels = out_channels
        self.projections = nn.ModuleDict(
            {m: nn.Linear(c, out_channels) for m, c in self.in_channels.items()})

    def _project(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        feats = ordered(features, self.modalities)
        return {m: self.projections[m](z) for m, z in zip(self.modalities, feats)}

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(self._project(features).values())).sum(dim=0)

    def branch_outputs(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``W_m z_m + b_m`` of every modality present in ``features``."""
        return {m: self.projections[m](features[m]) for m in self.modalities if m in features}

    def analytic_logits(self, features: Dict[str, torch.Tensor],
                        head: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
        parts = self._project(features)
        if head is None:
            return parts
        weight, bias = linear_head_params(head, self)
        bias = split_bias(bias, len(self.modalities))
        return {m: F.linear(p, weight, bias) for m, p in parts.items()}
