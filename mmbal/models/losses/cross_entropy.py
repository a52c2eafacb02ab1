"""Cross-entropy classification loss, registered so configs can name it."""
from torch import nn

from mmbal.registry import MODELS


@MODELS.register_module()
class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` (mean over the batch) under the mmbal registry."""
