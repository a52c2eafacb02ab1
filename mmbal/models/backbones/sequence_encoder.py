"""Base of the encoders of variable-length feature sequences (affect datasets)."""
from typing import Union

import torch
from torch import nn

from mmbal.structures import PaddedSequence, join_steps, masked_mean, split_steps, to_steps
from .base_encoder import BaseEncoder


class StepModule(nn.Module):
    """Applies a per-step module to the features of a step tensor and keeps the mask.

    Padded steps are zeroed again after the module (see ``mmbal.structures.step_features``).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, mask = split_steps(h)
        return join_steps(self.module(x), mask)


class SequenceEncoder(BaseEncoder):
    """Encodes a ``PaddedSequence`` (or a plain ``(B, T, D)`` tensor, every step real).

    Stage layout = module layout: the step tensor ``(B, T, C_i + 1)`` of
    ``mmbal.structures.step_features`` (per-step features, then the validity
    channel), so the mask travels through every stage and ``out.flatten(1)``
    is one row per sample. Padded steps never reach a real step's output.

    ``pool`` gives ``(B, out_channels)``: by default the mean over the real
    steps (subclasses may choose another). With ``keep_steps=True`` it returns
    the last stage's step tensor ``(B, T, out_channels + 1)`` instead, the
    per-step features the sequence fusions (``CrossAttentionFusion``,
    ``TransformerFusion``) take; pooled fusions (concat, late, ...) need the
    default.

    Args:
        in_channels: Feature size ``D`` of each input step.
        keep_steps: Output the unpooled step tensor (see above).
    """

    def __init__(self, in_channels: int, keep_steps: bool = False, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(keep_steps, bool):
            raise ValueError(f'{type(self).__name__}: keep_steps must be True or False, got '
                             f'{keep_steps!r}')
        self.in_channels = in_channels
        self.keep_steps = keep_steps

    def prepare(self, x: Union[PaddedSequence, torch.Tensor]) -> torch.Tensor:
        """Args: x, a PaddedSequence or (B, T, in_channels). Returns: (B, T, in_channels + 1)."""
        return to_steps(x, self.in_channels, type(self).__name__)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Mean over the real steps ``(B, out_channels)``, or ``h`` itself with ``keep_steps``."""
        return h if self.keep_steps else self.pool_steps(*split_steps(h))

    def pool_steps(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` and its mask -> ``(B, C)``; the mean over real steps."""
        return masked_mean(features, mask)
