"""ResNet18 encoders for spectrograms (1 channel) and frame stacks (T frames)."""
import contextlib
from typing import Iterator, List, Optional, Tuple

import torch
from torch import nn

from mmbal.registry import MODELS

from .base_encoder import BaseEncoder


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


@MODELS.register_module()
class ResNet18(BaseEncoder):
    """ResNet18 trunk returning one pooled feature vector per sample.

    A 4-D input ``(B, C, H, W)`` (e.g. a spectrogram) is pooled over space.
    A 5-D input ``(B, C, T, H, W)`` runs each frame through the 2-D network and
    averages over time and space, as the reference audio-visual repos do.

    Stages: the four residual stages; the stem (7x7 conv, BN, ReLU, max-pool)
    is the front of stage 0, not a stage of its own. Stage ``i`` outputs
    ``(B, base_channels * 2**i, H_i, W_i)`` for a 4-D input and
    ``(B, T, base_channels * 2**i, H_i, W_i)`` for a 5-D one (frames of a
    sample together), with ``H_0 = ceil(H / 4)`` and ``H_i = ceil(H_{i-1} / 2)``.
    In the module layout the frames are folded into the batch, ``(B*T, C, H, W)``.

    Init (construction and ``init_weights``): kaiming-normal (fan_out, ReLU)
    convolutions, BN weight 1 and bias 0, and with ``zero_init_residual`` the
    last BN weight of every block 0.

    Args:
        in_channels: Input channels (1 for spectrograms, 3 for RGB).
        base_channels: Width of the first stage (64 is the standard network;
            the CPU demo uses a narrow one). Stage ``i`` has
            ``base_channels * 2**i`` channels.
        zero_init_residual: Zero the last BN of each block (off in the papers).
        channels_last: Hold the convolution weights in the channels-last memory
            layout (``torch.channels_last``), so that every convolution, BN and
            pooling output is channels-last too (a weight in that layout makes
            the convolution return it, whatever the input's layout). The same
            arithmetic in another order of memory: outputs agree with the
            default layout to float rounding. On CPU (oneDNN) it is faster: a
            training step of the width-16 demo model took 0.78x the time of the
            default layout (paired blocks, 2 cores; benchmarks/README.md). Off
            by default; not measured on GPUs.
    """

    arch_blocks = (2, 2, 2, 2)

    def __init__(self, in_channels: int = 3, base_channels: int = 64,
                 zero_init_residual: bool = False, channels_last: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.zero_init_residual = zero_init_residual
        self.channels_last = channels_last
        self._drawing = False  # inside _default_layout
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, 7, 2, 3, bias=False),
            nn.BatchNorm2d(base_channels), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1))
        stages: List[nn.Module] = []
        channels = base_channels
        for i, num_blocks in enumerate(self.arch_blocks):
            out_channels = base_channels * 2**i
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(channels, out_channels, stride)]
            blocks += [BasicBlock(out_channels, out_channels) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = out_channels
        # One entry per depth: methods that act per block (AIM, D&R) index these.
        self.stages = nn.ModuleList(stages)
        self.out_channels = channels
        self._init_defaults()
        if channels_last:
            # load_state_dict and .to(device) keep a tensor's layout; random re-draws
            # do not see it (init_default_weights, init_weights below).
            self.to(memory_format=torch.channels_last)

    @contextlib.contextmanager
    def _default_layout(self) -> Iterator[None]:
        """Random draws in the default layout: an in-place draw fills memory in its
        physical order, so a channels-last weight would get the same numbers at other
        positions; drawn contiguous, a seed gives the same weights in either layout.
        Re-entrant: ``init_weights`` runs ``init_default_weights`` and then the
        ``init_cfg`` initialisers, all inside the outermost call's default layout."""
        if not self.channels_last or self._drawing:
            yield
            return
        self._drawing = True
        self.to(memory_format=torch.contiguous_format)  # same Parameter objects
        try:
            yield
        finally:
            self.to(memory_format=torch.channels_last)
            self._drawing = False

    def init_default_weights(self) -> None:
        with self._default_layout():
            super().init_default_weights()

    def init_weights(self) -> None:
        with self._default_layout():
            super().init_weights()

    def _init_defaults(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def stage_members(self) -> List[List[nn.Module]]:
        return [[self.stem, self.stages[0]]] + [[stage] for stage in self.stages[1:]]

    def stage_channels(self) -> List[int]:
        return [self.base_channels * 2**i for i in range(len(self.arch_blocks))]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (B, C, H, W) or (B, C, T, H, W). Returns: (B, C, H, W) or (B, T, C, H, W)."""
        if x.dim() not in (4, 5):
            raise ValueError(
                f'ResNet18 expects a (B, C, H, W) or (B, C, T, H, W) input, '
                f'got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'ResNet18 was built with in_channels={self.in_channels} '
                             f'but got an input with {x.shape[1]} channels')
        return x.transpose(1, 2) if x.dim() == 5 else x

    def to_module_layout(self, h: torch.Tensor) -> Tuple[torch.Tensor, Optional[int]]:
        """(B, T, C, H, W) -> (B*T, C, H, W) and T; a 4-D tensor passes (fold None)."""
        if h.dim() == 5:
            b, t = h.shape[:2]
            return h.reshape(b * t, *h.shape[2:]), t
        return h, None

    def from_module_layout(self, y: torch.Tensor, fold: Optional[int]) -> torch.Tensor:
        """(B*T, C, H, W) -> (B, T, C, H, W) when ``fold`` is T, else unchanged."""
        return y if fold is None else y.view(-1, fold, *y.shape[1:])

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Mean over space, then over frames. Args: h (B, C, H, W) or (B, T, C, H, W)."""
        z, frames = self.to_module_layout(h)
        z = z.mean(dim=(2, 3))
        return z if frames is None else z.view(-1, frames, z.shape[1]).mean(dim=1)
