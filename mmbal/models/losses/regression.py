"""Regression losses on a one-unit output: L1 / MSE, optionally through a sigmoid."""
import torch
import torch.nn.functional as F
from torch import nn

from mmbal.registry import MODELS

KINDS = ('l1', 'mse')


@MODELS.register_module()
class RegressionLoss(nn.Module):
    """``mean |p - y|`` (``'l1'``) or ``mean (p - y)^2`` (``'mse'``), ``p = sigmoid(f)``
    when ``sigmoid`` else ``f``.

    The affect literature (MulT, MultiBench) trains the sentiment score with L1 on the
    raw output; G2D's regression student loss is MSE of ``sigmoid(f)`` against targets
    scaled to [0, 1]. :meth:`prediction` gives ``p``: what metrics score.

    Args:
        kind: ``'l1'`` or ``'mse'``.
        sigmoid: Apply a sigmoid to the output first (targets in [0, 1]).
    """

    def __init__(self, kind: str = 'l1', sigmoid: bool = False) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f'RegressionLoss: kind={kind!r}; expected one of {KINDS}')
        self.kind = kind
        self.sigmoid = bool(sigmoid)

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """``(B,)`` predictions in target units from a ``(B,)`` or ``(B, 1)`` output."""
        if output.ndim == 2 and output.shape[1] != 1 or output.ndim > 2:
            raise ValueError(f'RegressionLoss: output of shape {tuple(output.shape)}; '
                             'expected (B,) or (B, 1): one regression unit')
        output = output.reshape(-1)
        return torch.sigmoid(output) if self.sigmoid else output

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = self.prediction(output)
        target = target.reshape(-1).to(pred.dtype)
        if target.shape != pred.shape:
            raise ValueError(f'RegressionLoss: {pred.numel()} predictions for '
                             f'{target.numel()} targets')
        if self.kind == 'l1':
            return F.l1_loss(pred, target)
        return F.mse_loss(pred, target)
