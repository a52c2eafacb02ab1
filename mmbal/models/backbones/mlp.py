"""MLP encoder for pre-extracted feature vectors."""
from typing import Sequence

import torch
from mmengine.model import BaseModule
from torch import nn

from mmbal.registry import MODELS


@MODELS.register_module()
class MLPEncoder(BaseModule):
    """Linear-ReLU stack mapping ``(B, in_channels)`` to ``(B, out_channels)``.

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
        layers = []
        prev = in_channels
        for width in hidden_channels:
            layers += [nn.Linear(prev, width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        layers.append(nn.Linear(prev, out_channels))
        self.layers = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, in_channels) or (B, ..., in_channels) flattened. Returns (B, out)."""
        return self.layers(x.flatten(1))
