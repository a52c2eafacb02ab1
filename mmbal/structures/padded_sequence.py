"""A batch of variable-length feature sequences: zero-padded data and a validity mask.

Affect datasets (CMU-MOSI/MOSEI, UR-Funny, IEMOCAP) give each modality as a
``(T_i, D)`` sequence whose length varies by sample. The loader pads a batch to
its longest sample and keeps which steps are real in ``mask``, so sequence
encoders can ignore the padding instead of guessing it from zero rows.
``PaddedSequence`` is a ``NamedTuple``: MMEngine's ``cast_data`` moves both
fields to the model's device.
"""
from typing import Any, Dict, List, NamedTuple, Sequence

import torch
from mmengine.dataset import default_collate
# MMEngine's own registry: the Runner looks collate functions up there, unscoped.
from mmengine.registry import FUNCTIONS


class PaddedSequence(NamedTuple):
    """``data``: ``(B, T, D)`` float, zero past each length; ``mask``: ``(B, T)`` bool, True = real step."""

    data: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` number of real steps per sample."""
        return self.mask.sum(dim=1)


def pad_sequences(sequences: Sequence[torch.Tensor], name: str = 'sequence') -> PaddedSequence:
    """Zero-pad ``(T_i, D)`` tensors to the longest ``T_i`` (steps at the end).

    Args:
        sequences: One tensor per sample, all with the same feature size ``D``.
        name: Used in error messages (the modality).

    Raises:
        ValueError: an empty batch, a tensor that is not 2-D, an empty sequence
            or a feature size that differs between samples.
    """
    if not len(sequences):
        raise ValueError(f'pad_sequences: no {name} sequences to pad')
    for i, seq in enumerate(sequences):
        if not isinstance(seq, torch.Tensor) or seq.ndim != 2:
            shape = tuple(seq.shape) if hasattr(seq, 'shape') else type(seq).__name__
            raise ValueError(f'pad_sequences: {name} sample {i} has shape {shape}; '
                             'expected a (T, D) tensor')
        if seq.shape[0] == 0:
            raise ValueError(f'pad_sequences: {name} sample {i} has no steps (T = 0)')
    dims = {int(seq.shape[1]) for seq in sequences}
    if len(dims) != 1:
        raise ValueError(f'pad_sequences: {name} samples have feature sizes {sorted(dims)}; '
                         'expected one size')
    lengths = torch.tensor([int(seq.shape[0]) for seq in sequences])
    longest = int(lengths.max())
    data = sequences[0].new_zeros((len(sequences), longest, dims.pop()))
    for i, seq in enumerate(sequences):
        data[i, :seq.shape[0]] = seq
    mask = torch.arange(longest)[None, :] < lengths[:, None]
    return PaddedSequence(data, mask)


@FUNCTIONS.register_module()
def sequence_collate(data_batch: Sequence[Dict[str, Any]],
                     sequences: Sequence[str] = ()) -> Dict[str, Any]:
    """``default_collate``, except that the modalities named in ``sequences`` are padded.

    Use as ``collate_fn=dict(type='sequence_collate', sequences=['audio', 'visual', 'text'])``:
    which modalities are sequences is declared, never guessed from shapes.
    """
    if isinstance(sequences, str):
        sequences = (sequences, )
    if not data_batch:
        raise ValueError('sequence_collate: empty batch')
    first = data_batch[0].get('inputs', {})
    missing = [m for m in sequences if m not in first]
    if missing:
        raise KeyError(f'sequence_collate: sequences={list(sequences)} names {missing}, '
                       f'which the samples do not have; their inputs: {sorted(first)}')
    padded = {m: pad_sequences([sample['inputs'][m] for sample in data_batch], m)
              for m in sequences}
    rest: List[Dict[str, Any]] = [
        {**sample, 'inputs': {m: v for m, v in sample['inputs'].items() if m not in padded}}
        for sample in data_batch]
    batch = default_collate(rest)
    batch['inputs'] = {**batch['inputs'], **padded}
    return batch
