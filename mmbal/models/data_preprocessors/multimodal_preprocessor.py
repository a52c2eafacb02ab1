"""Stacks a batch of per-modality tensors and moves it to the model's device."""
from typing import Any, Dict, Sequence, Union

import torch
from mmengine.model import BaseDataPreprocessor

from mmbal.registry import MODELS
from mmbal.structures import PaddedSequence


def _stack(value: Union[torch.Tensor, PaddedSequence, Sequence], name: str = 'value'
           ) -> Union[torch.Tensor, PaddedSequence]:
    """A batched tensor from ``default_collate`` output or a list (``pseudo_collate``).

    A ``PaddedSequence`` (from ``sequence_collate``) is already a batch.
    """
    if isinstance(value, (torch.Tensor, PaddedSequence)):
        return value
    if len(value) and isinstance(value[0], torch.Tensor):
        shapes = {tuple(v.shape) for v in value}
        if len(shapes) > 1:
            raise ValueError(f'{name!r}: samples of shapes {sorted(shapes)} cannot be stacked; '
                             "variable-length sequences need collate_fn=dict(type='sequence_collate', "
                             f"sequences=[{name!r}, ...])")
        return torch.stack(list(value))
    return torch.as_tensor(value)


@MODELS.register_module()
class MultimodalDataPreprocessor(BaseDataPreprocessor):
    """Turns ``{'inputs': {m: ...}, 'data_samples': ...}`` into device tensors.

    Batches should be collated with ``default_collate`` in the data loader
    workers so that stacking happens there; lists (``pseudo_collate``) are
    stacked here. ``data_samples`` becomes a dict of ``(B,)`` tensors
    (``gt_label``, ``sample_idx``).
    """

    def forward(self, data: Dict[str, Any], training: bool = False) -> Dict[str, Any]:
        inputs = {m: _stack(v, m) for m, v in data['inputs'].items()}
        samples = data.get('data_samples')
        if isinstance(samples, (list, tuple)):
            samples = {k: _stack([s[k] for s in samples], k) for k in samples[0]}
        elif isinstance(samples, dict):
            samples = {k: _stack(v, k) for k, v in samples.items()}
        return self.cast_data({'inputs': inputs, 'data_samples': samples})
