"""Linear regression head: one (or a few) real-valued outputs from the fused feature."""
import torch
from mmengine.model import BaseModule
from torch import nn

from mmbal.registry import MODELS


@MODELS.register_module()
class LinearRegHead(BaseModule):
    """``y_hat = fc(x)`` with ``out_channels`` outputs (1 for a sentiment score).

    Shaped like :class:`LinearClsHead` (an ``fc`` ``nn.Linear``), so the fusions'
    analytic per-modality outputs decompose it the same way; ``num_classes`` is
    the output size the classifier and the balance methods read.

    Args:
        in_channels: Size of the fused feature.
        out_channels: Number of regression outputs.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) \
                or out_channels < 1:
            raise ValueError(f'LinearRegHead: out_channels={out_channels!r}; expected an '
                             'int >= 1')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.fc = nn.Linear(in_channels, out_channels)

    @property
    def num_classes(self) -> int:
        """The output size (the classifier's ``num_classes``)."""
        return self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, in_channels). Returns: (B, out_channels) raw outputs."""
        return self.fc(x)
