"""MMCosine's classifier (Xu et al., ICASSP 2023): per-modality cosine logits, summed.

The fusion is concatenation followed by one bias-free linear layer, but each
modality's feature and each class row of that modality's weight block are
L2-normalised separately, so ``f = s * sum_m cos(z_m, W_m)`` and every
modality contributes at most ``s`` to a class logit, whatever its feature norm.
"""
import math
import numbers
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmbal.registry import MODELS
from .base_fusion import BaseFusion, ordered

#: ``max(||x||, NORM_EPS)`` in every normalisation (``F.normalize``'s default).
NORM_EPS = 1e-12


def cosine_logits(feature: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """``s * <z / ||z||, W_c / ||W_c||>`` for every class row ``W_c`` of ``weight``.

    Args:
        feature: (B, d). weight: (C, d), one modality's block. scale: s.
    Returns:
        (B, C). A zero feature (or row) gives 0, not NaN.
    """
    z = F.normalize(feature, dim=1, eps=NORM_EPS)
    w = F.normalize(weight, dim=1, eps=NORM_EPS)
    return scale * F.linear(z, w)


@MODELS.register_module()
class CosineFusion(BaseFusion):
    """Concatenation with MMCosine's cosine classifier; it ends in class logits (``head=None``).

    ``f = s * sum_m cos(z_m, W_m)`` with ``W_m`` the column block of modality m
    of a ``C x sum_m d_m`` weight (config order), no bias. Analytic and probe
    logits are the modality's own term ``s_m = s * cos(z_m, W_m)``. For M > 2
    the sum runs over every modality (ours; the paper has two).

    Args:
        in_channels: Feature size per modality.
        num_classes: Number of classes C.
        scale: s > 0 (the paper's CREMA-D value is 10).
        reference_compat: Evaluate as the reference code does: in eval mode the
            fused output is the raw linear layer ``W [z_1; ...; z_M] + b`` on the
            unnormalised features, with a bias ``b`` that keeps its
            initialisation (nothing trains it; it is a buffer, so DDP never
            waits for its gradient). Training and the per-modality logits stay
            cosine.
    """

    supports_analytic = True
    outputs_logits = True
    probe_is_branch = True

    def __init__(self, in_channels: Dict[str, int], num_classes: int, scale: float = 10.0,
                 reference_compat: bool = False, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'CosineFusion: num_classes={num_classes!r}; expected an int >= 1')
        if (isinstance(scale, bool) or not isinstance(scale, numbers.Real)
                or not math.isfinite(scale) or scale <= 0):
            raise ValueError(f'CosineFusion: scale={scale!r}; expected a finite number > 0 '
                             f'(the cosine scale s)')
        if not isinstance(reference_compat, bool):
            raise ValueError(f'CosineFusion: reference_compat must be True or False, got '
                             f'{reference_compat!r}')
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.scale = float(scale)
        self.reference_compat = reference_compat
        # The reference's fc_out, nn.Linear's init; its bias is never trained.
        self.fc = nn.Linear(sum(self.in_channels.values()), num_classes)
        bias = self.fc.bias.detach().clone()
        self.fc.register_parameter('bias', None)
        self.eval_bias: Optional[torch.Tensor]
        self.register_buffer('eval_bias', bias if reference_compat else None)

    def branch_outputs(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``s * cos(z_m, W_m)`` of every modality present (a pass may encode only some)."""
        logits, start = {}, 0
        for m in self.modalities:
            stop = start + self.in_channels[m]
            if m in features:
                logits[m] = cosine_logits(features[m], self.fc.weight[:, start:stop],
                                          self.scale)
            start = stop
        return logits

    def analytic_logits(self, features: Dict[str, torch.Tensor],
                        head: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
        return self.branch_outputs(features)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Fused logits ``(B, C)`` from ``{m: (B, d_m)}`` (all modalities)."""
        feats = ordered(features, self.modalities)
        if self.reference_compat and not self.training:
            return F.linear(torch.cat(feats, dim=1), self.fc.weight, self.eval_bias)
        return torch.stack(list(self.branch_outputs(features).values())).sum(dim=0)
