"""An MLP over the mean of a feature sequence's real steps."""
from typing import List, Sequence

import torch
from torch import nn

from mmbal.registry import MODELS
from mmbal.structures import masked_mean, split_steps
from .mlp import linear_stack, linear_stages
from .sequence_encoder import SequenceEncoder


class MaskedMean(nn.Module):
    """Step tensor ``(B, T, C + 1)`` -> ``(B, C)``, the mean over real steps."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return masked_mean(*split_steps(h))


@MODELS.register_module()
class MeanPoolMLPEncoder(SequenceEncoder):
    """Mean over the real steps, then a Linear-ReLU stack as in ``MLPEncoder``.

    Stages: those of the MLP (one per Linear), the mean at the front of stage
    0. Stage 0's input is the step tensor ``(B, T, in_channels + 1)``; every
    stage outputs ``(B, C_j)`` vectors and pooling is the identity, so
    ``keep_steps`` does not exist here (there are no steps after the mean).

    Init (construction and ``init_weights``): PyTorch's default Linear init.

    Args:
        in_channels: Feature size of each input step.
        out_channels: Output feature size.
        hidden_channels: Sizes of the hidden layers (may be empty).
        dropout: Dropout after each hidden activation.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: Sequence[int] = (), dropout: float = 0.0,
                 init_cfg=None) -> None:
        super().__init__(in_channels, init_cfg=init_cfg)
        self.mean = MaskedMean()
        self.layers = linear_stack(in_channels, out_channels, hidden_channels, dropout)
        self.out_channels = out_channels

    def stage_members(self) -> List[List[nn.Module]]:
        first, *rest = linear_stages(self.layers)
        return [[self.mean, *first], *rest]

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Identity: the last stage already outputs ``(B, out_channels)``."""
        return h
