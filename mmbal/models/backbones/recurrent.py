"""GRU and LSTM encoders for feature sequences, one recurrent layer per stage."""
from typing import List

import torch
from torch import nn

from mmbal.registry import MODELS
from mmbal.structures import join_steps, split_steps
from .sequence_encoder import SequenceEncoder

POOLINGS = ('last', 'mean')


class RNNStep(nn.Module):
    """One unidirectional recurrent layer on a step tensor whose padding is at the end.

    The layer is causal, so the output at a real step depends on that step and
    the ones before it only, never on the trailing padding: it equals the
    output of the sample run alone. Padded outputs are zeroed.
    """

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, mask = split_steps(h)
        return join_steps(self.rnn(x)[0], mask)


class RecurrentEncoder(SequenceEncoder):
    """``num_layers`` stacked unidirectional recurrent layers of ``hidden_channels``.

    Stages: one per layer; stage ``i`` outputs the step tensor
    ``(B, T, hidden_channels + 1)``. The padding must be at the end of each
    sequence (as ``pad_sequences`` lays it out), so that a real step never
    follows a padded one through the recurrence: such an input is rejected.
    ``pooling='last'`` (default) takes each sample's output at its last real
    step, the usual summary of a recurrent encoder; ``'mean'`` the mean over
    real steps.

    Init (construction and ``init_weights``): PyTorch's default recurrent init
    (uniform in ``+-1/sqrt(hidden_channels)``), nothing on top.

    Args:
        in_channels: Feature size of each input step.
        hidden_channels: Hidden size of every layer, the pooled feature size.
        num_layers: Number of layers (= stages).
        dropout: Dropout between layers (on the step features).
        pooling: ``'last'`` or ``'mean'``.
        keep_steps: See ``SequenceEncoder``.
    """

    rnn_type: type

    def __init__(self, in_channels: int, hidden_channels: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, pooling: str = 'last', keep_steps: bool = False,
                 init_cfg=None) -> None:
        super().__init__(in_channels, keep_steps, init_cfg)
        name = type(self).__name__
        if num_layers < 1:
            raise ValueError(f'{name}: num_layers={num_layers}; expected >= 1')
        if pooling not in POOLINGS:
            raise ValueError(f'{name}: pooling={pooling!r}; expected one of {POOLINGS}')
        self.pooling = pooling
        layers: List[nn.Module] = []
        for i in range(num_layers):
            if i and dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(RNNStep(self.rnn_type(
                in_channels if i == 0 else hidden_channels, hidden_channels, batch_first=True)))
        self.layers = nn.Sequential(*layers)
        self.out_channels = hidden_channels

    def stage_members(self) -> List[List[nn.Module]]:
        # Each recurrent layer closes a stage; the dropout before it belongs to that stage.
        stages: List[List[nn.Module]] = [[]]
        for layer in self.layers:
            stages[-1].append(layer)
            if isinstance(layer, RNNStep):
                stages.append([])
        return stages[:-1]

    def prepare(self, x) -> torch.Tensor:
        h = super().prepare(x)
        mask = split_steps(h)[1]
        gaps = (mask[:, 1:] & ~mask[:, :-1]).any(dim=1).nonzero().flatten().tolist()
        if gaps:
            raise ValueError(f'{type(self).__name__}: samples {gaps} have a real step after a '
                             f'padded one; recurrent encoders need the padding at the end')
        return h

    def pool_steps(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``'last'``: the output at each sample's last real step; ``'mean'``: over real steps."""
        if self.pooling == 'mean':
            return super().pool_steps(features, mask)
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        return features[torch.arange(features.shape[0], device=features.device), last]


@MODELS.register_module()
class GRUEncoder(RecurrentEncoder):
    """``RecurrentEncoder`` with ``nn.GRU`` layers."""

    rnn_type = nn.GRU


@MODELS.register_module()
class LSTMEncoder(RecurrentEncoder):
    """``RecurrentEncoder`` with ``nn.LSTM`` layers."""

    rnn_type = nn.LSTM
