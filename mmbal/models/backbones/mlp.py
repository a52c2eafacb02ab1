"""MLP encoder for pre-extracted feature vectors."""
from typing import List, Sequence

import torch
from torch import nn

from mmbal.registry import MODELS

from .base_encoder import BaseEncoder


def linear_stack(in_channels: int, out_channels: int, hidden_channels: Sequence[int] = (),
                 dropout: float = 0.0) -> nn.Sequential:
    """``Linear, ReLU[, Dropout]`` per hidden size, then the output ``Linear``."""
    layers: List[nn.Module] = []
    prev = in_channels
    for width in hidden_channels:
        layers += [nn.Linear(prev, width), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = width
    layers.append(nn.Linear(prev, out_channels))
    return nn.Sequential(*layers)


def linear_stages(layers: nn.Sequential) -> List[List[nn.Module]]:
    """Stages of a ``linear_stack``: each Linear opens one, the layers after it join it."""
    stages: List[List[nn.Module]] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            stages.append([])
        stages[-1].append(layer)
    return stages


@MODELS.register_module()
class MLPEncoder(BaseEncoder):
    """Linear-ReLU stack mapping ``(B, in_channels)`` to ``(B, out_channels)``.

    Stages: one per Linear layer, with the activation and dropout that follow
    it; stage ``j`` outputs ``(B, hidden_channels[j])`` and the last stage (the
    output Linear, no activation) ``(B, out_channels)``. Stage and module
    layouts are the same, and pooling is the identity.

    Init (construction and ``init_weights``): PyTorch's default Linear init
    (``nn.Linear.reset_parameters``), nothing on top.

    Args:
        in_channels: Input feature size.
        hidden_channels: Sizes of the hidden layers (may be empty).
        out_channels: Output feature size.
        dropout: Dropout after each hidden activation.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: Sequence[int] = (), dropout: float = 0.0,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.layers = linear_stack(in_channels, out_channels, hidden_channels, dropout)
        self.in_channels = in_channels
        self.hidden_channels = list(hidden_channels)
        self.out_channels = out_channels

    def stage_members(self) -> List[List[nn.Module]]:
        return linear_stages(self.layers)

    def stage_channels(self) -> List[int]:
        return [*self.hidden_channels, self.out_channels]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, in_channels) or (B, ...) flattened to it. Returns (B, in_channels)."""
        return x.flatten(1)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Identity: the last stage already outputs ``(B, out_channels)``."""
        return h
