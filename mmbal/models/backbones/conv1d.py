"""1-D convolutional encoder for feature sequences, one conv layer per stage."""
from typing import List, Sequence

import torch
from torch import nn

from mmbal.registry import MODELS
from mmbal.structures import join_steps, split_steps
from .sequence_encoder import SequenceEncoder


class MaskedConvStep(nn.Module):
    """``ReLU(Conv1d)`` over time on a step tensor ('same' length, stride 1).

    Padded steps are zero on the way in and zeroed on the way out, so a real
    step next to the padding sees exactly the zeros the convolution's own
    border padding gives a sample run alone.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, mask = split_steps(h)
        y = self.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return join_steps(y, mask)


@MODELS.register_module()
class Conv1dEncoder(SequenceEncoder):
    """Stacked ``ReLU(Conv1d)`` layers over time, then the mean over real steps.

    Stages: one per conv layer; stage ``j`` outputs the step tensor
    ``(B, T, channels[j] + 1)`` (the sequence length is kept). The conv
    weights are OGM-GE's / G2D's conv group (``named_conv_weights``).

    Init (construction and ``init_weights``): PyTorch's default Conv1d init,
    nothing on top.

    Args:
        in_channels: Feature size of each input step.
        channels: Output channels of each layer; the last is the pooled size.
        kernel_size: Odd temporal kernel size of every layer.
        keep_steps: See ``SequenceEncoder``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (64, 64),
                 kernel_size: int = 3, keep_steps: bool = False, init_cfg=None) -> None:
        super().__init__(in_channels, keep_steps, init_cfg)
        if not channels:
            raise ValueError('Conv1dEncoder: channels is empty; expected one entry per layer')
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'Conv1dEncoder: kernel_size={kernel_size}; expected an odd '
                             f'size >= 1 (the sequence length is kept)')
        widths = [in_channels, *channels]
        self.layers = nn.ModuleList(MaskedConvStep(c_in, c_out, kernel_size)
                                    for c_in, c_out in zip(widths[:-1], widths[1:]))
        self.out_channels = widths[-1]

    def stage_members(self) -> List[List[nn.Module]]:
        return [[layer] for layer in self.layers]
