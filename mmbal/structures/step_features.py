"""Per-step features as one tensor: the features of each step, then a validity channel.

Sequence encoders keep a batch of variable-length sequences in their stage
layout as a *step tensor* ``(B, T, C + 1)``: ``[..., :C]`` are the features of
each step (zero at padded steps) and ``[..., C]`` is 1.0 at real steps and 0.0
at padded ones. One plain tensor carries the mask through every stage, so what
the methods do with stage outputs keeps working (AIM flattens them per sample
and runs single stages through ``functional_call``; the gradient gate and the
probes handle features as tensors): zeroing a step tensor, as a probe does,
marks every step padded, i.e. the modality is absent.

A validity value above 0.5 counts as real (a mean of step tensors, such as a
prototype, has fractional values).
"""
from typing import Tuple, Union

import torch

from .padded_sequence import PaddedSequence


def split_steps(h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, C + 1)`` -> features ``(B, T, C)`` and mask ``(B, T)`` bool (True = real)."""
    return h[..., :-1], h[..., -1] > 0.5


def join_steps(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Features ``(B, T, C)`` and mask ``(B, T)`` -> the step tensor; padded steps zeroed."""
    valid = mask.unsqueeze(-1).to(features.dtype)
    return torch.cat([features * valid, valid], dim=-1)


def to_steps(x: Union[PaddedSequence, torch.Tensor], channels: int,
             owner: str) -> torch.Tensor:
    """A ``PaddedSequence`` or a plain ``(B, T, D)`` tensor (every step real) as a step tensor.

    Raises:
        ValueError: naming ``owner`` and what was expected, for a wrong shape,
            feature size, mask or a sample without real steps.
    """
    if isinstance(x, PaddedSequence):
        data, mask = x
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ValueError(f'{owner}: the PaddedSequence mask must be a bool tensor, got '
                             f'{getattr(mask, "dtype", type(mask).__name__)}')
        if data.dim() != 3 or tuple(mask.shape) != tuple(data.shape[:2]):
            raise ValueError(f'{owner}: PaddedSequence data {tuple(data.shape)} and mask '
                             f'{tuple(mask.shape)}; expected (B, T, D) and (B, T)')
    elif isinstance(x, torch.Tensor):
        data, mask = x, None
        if data.dim() != 3:
            raise ValueError(f'{owner} expects a PaddedSequence or a (B, T, D) tensor, got '
                             f'shape {tuple(data.shape)}')
    else:
        raise ValueError(f'{owner} expects a PaddedSequence or a (B, T, D) tensor, got '
                         f'{type(x).__name__}')
    if data.shape[-1] != channels:
        raise ValueError(f'{owner} was built with in_channels={channels} but got steps of '
                         f'{data.shape[-1]} features')
    if mask is None:
        mask = data.new_ones(data.shape[:2], dtype=torch.bool)
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f'{owner}: samples {empty} of the batch have no real step')
    return join_steps(data, mask)


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, T, C)`` over the real steps -> ``(B, C)``; 0 for a sample without any."""
    valid = mask.unsqueeze(-1).to(features.dtype)
    return (features * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)


def key_padding(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attention key padding mask (True = ignore) that never masks a whole row.

    Returns the key padding mask and ``(B,)`` whether each sample has a real key.
    A sample without real keys (an absent modality) attends to all its steps,
    which keeps the softmax finite; callers multiply its output by the second
    value so that it contributes nothing.
    """
    has_keys = mask.any(dim=1)
    return ~(mask | ~has_keys.unsqueeze(1)), has_keys
