"""Base of the fusions that read per-step features (step tensors) instead of pooled ones."""
from typing import Dict, Tuple

import torch
from torch import nn

from mmbal.models.utils.attention import PositionalProjection
from mmbal.structures import split_steps
from .base_fusion import BaseFusion, ordered


class StepFusion(BaseFusion):
    """Takes ``{m: (B, T_m, C_m + 1)}`` step tensors and projects each to ``embed_dims``.

    The features come from sequence encoders built with ``keep_steps=True``
    (the unpooled last stage, see ``mmbal.structures.step_features``);
    ``in_channels`` is each encoder's ``out_channels`` ``C_m``. Each modality
    gets its own ``Linear`` plus the sine position code. A modality whose
    steps are all padded (a probe zeroes the other modalities' step tensors)
    is absent: it is attended by nothing and pools to zero.

    Args:
        in_channels: Per-step feature size per modality (at least two).
        embed_dims: Width of the attention blocks.
    """

    def __init__(self, in_channels: Dict[str, int], embed_dims: int, init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg)
        if len(self.modalities) < 2:
            raise ValueError(f'{type(self).__name__} attends across modalities; it needs at '
                             f'least two, got {self.modalities}')
        self.embed_dims = embed_dims
        self.projections = nn.ModuleDict(
            {m: PositionalProjection(c, embed_dims) for m, c in self.in_channels.items()})

    def project(self, features: Dict[str, torch.Tensor]
                ) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
        """``{m: (projected steps (B, T_m, embed_dims), mask (B, T_m))}``, shapes checked."""
        out = {}
        for m, h in zip(self.modalities, ordered(features, self.modalities)):
            expected = self.in_channels[m] + 1
            if h.dim() != 3 or h.shape[-1] != expected:
                raise ValueError(
                    f'{type(self).__name__}: the feature of {m!r} has shape {tuple(h.shape)}; '
                    f'expected per-step features (B, T, {expected}): build its encoder (a '
                    f'sequence encoder) with keep_steps=True')
            x, mask = split_steps(h)
            out[m] = (self.projections[m](x), mask)
        return out
