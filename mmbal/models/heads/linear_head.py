"""Linear classifier head on a fused feature vector."""
import torch
from mmengine.model import BaseModule
from torch import nn

from mmbal.registry import MODELS


@MODELS.register_module()
class LinearClsHead(BaseModule):
    """``logits = fc(x)``; the classifier fills ``in_channels`` from its fusion neck.

    Args:
        num_classes: Number of classes.
        in_channels: Size of the fused feature.
    """

    def __init__(self, num_classes: int, in_channels: int, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, in_channels). Returns: logits (B, num_classes)."""
        return self.fc(x)
