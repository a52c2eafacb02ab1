"""Pack per-modality arrays into the tensors and labels the model's data preprocessor collates."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mmbal.registry import TRANSFORMS
from .base import MMBalTransform


def _numpy_to_tensor(array: np.ndarray) -> torch.Tensor:
    """Contiguous float32 tensor in the layout documented in :class:`PackMultimodalInputs`.

    Makes at most one copy (layout change and dtype cast together); a
    contiguous float32 1-D/2-D array is shared, not copied.
    """
    if array.ndim == 4:  # (T, H, W, C) -> (C, T, H, W)
        array = array.transpose(3, 0, 1, 2)
    if array.dtype != np.float32:
        array = array.astype(np.float32, order='C')
    else:
        array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # torch.from_numpy warns on read-only memory
        array = array.copy()
    tensor = torch.from_numpy(array)
    if tensor.ndim == 2:  # (F, T) -> (1, F, T)
        tensor = tensor.unsqueeze(0)
    return tensor


def _tensor_to_tensor(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.ndim == 4:
        tensor = tensor.permute(3, 0, 1, 2)
    elif tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    return tensor.to(torch.float32, memory_format=torch.contiguous_format).contiguous()


@TRANSFORMS.register_module()
class PackMultimodalInputs(MMBalTransform):
    """Collect each modality as a float32 tensor in ``inputs`` and the label in ``data_samples``.

    Layouts (by the number of dimensions of ``results[name]``),

    - 1-D feature vector (D,) -> (D,)
    - 2-D spectrogram (F, T) -> (1, F, T)
    - 3-D array, taken as already channel-first, e.g. multi-channel (C, F, T) -> as is
    - 4-D frames (T, H, W, C) -> (C, T, H, W)

    except the modalities named in ``sequences``: a ``(T, D)`` feature sequence is
    packed as ``(T, D)`` unchanged (any other shape is an error), for
    ``collate_fn=dict(type='sequence_collate', ...)`` to pad. Which modalities
    are sequences is declared, never guessed from the shape.

    A missing modality raises KeyError: a model must never be trained on fewer
    modalities than its config names without noticing.

    Args:
        modalities (Sequence[str]): Results keys to pack, e.g. ``('audio', 'visual')``.
        meta_keys (Sequence[str]): Extra keys copied into ``data_samples`` when present
            (e.g. ``'audio_path'``).
        sequences (Sequence[str]): Modalities (among ``modalities``) that are ``(T, D)``
            feature sequences.
        label_type (str): ``'int'`` (a class index) or ``'float'`` (a regression target).

    Returns:
        dict: ``{'inputs': {name: Tensor}, 'data_samples': {'gt_label': int or float,
        'sample_idx': int, **meta}}``.
    """

    is_random = False
    LABEL_TYPES = {'int': int, 'float': float}

    def __init__(self, modalities: Sequence[str] = ('audio', 'visual'),
                 meta_keys: Sequence[str] = (), sequences: Sequence[str] = (),
                 label_type: str = 'int') -> None:
        if isinstance(modalities, str):
            modalities = (modalities, )
        if not modalities:
            raise ValueError('modalities must name at least one results key')
        self.modalities = tuple(modalities)
        self.meta_keys = tuple(meta_keys)
        self.sequences = (sequences, ) if isinstance(sequences, str) else tuple(sequences)
        unknown = [m for m in self.sequences if m not in self.modalities]
        if unknown:
            raise ValueError(f'PackMultimodalInputs: sequences={list(self.sequences)} names '
                             f'{unknown}, which are not among modalities={list(self.modalities)}')
        if label_type not in self.LABEL_TYPES:
            raise ValueError(f'PackMultimodalInputs: label_type={label_type!r}; expected one '
                             f'of {sorted(self.LABEL_TYPES)}')
        self.label_type = label_type

    def pack_sequence(self, name: str, value) -> torch.Tensor:
        """A ``(T, D)`` feature sequence -> float32 contiguous ``(T, D)`` tensor."""
        tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor)
                                 else value)
        if tensor.ndim != 2:
            raise ValueError(f'modality {name!r} is declared a sequence but has shape '
                             f'{tuple(tensor.shape)}; expected (T, D)')
        return tensor.to(torch.float32).contiguous()

    def pack_one(self, name: str, value) -> torch.Tensor:
        """One modality's array or tensor -> float32 contiguous tensor."""
        if name in self.sequences:
            return self.pack_sequence(name, value)
        if isinstance(value, torch.Tensor):
            tensor = _tensor_to_tensor(value)
        else:
            array = np.asarray(value)
            if array.dtype == object:
                raise TypeError(f'modality {name!r} is not a numeric array')
            tensor = _numpy_to_tensor(array)
        if tensor.ndim not in (1, 3, 4):
            raise ValueError(f'modality {name!r} has unsupported shape {tuple(value.shape)}; '
                             'expected (D,), (F, T), (C, F, T) or (T, H, W, C)')
        return tensor

    def transform(self, results: dict) -> dict:
        inputs = {}
        for name in self.modalities:
            if name not in results:
                raise KeyError(f'modality {name!r} is missing from the pipeline results; '
                               f'keys present: {sorted(results)}')
            inputs[name] = self.pack_one(name, results[name])
        for key in ('label', 'sample_idx'):
            if key not in results:
                raise KeyError(f'PackMultimodalInputs needs results[{key!r}]; keys present: '
                               f'{sorted(results)}')
        data_samples = {'gt_label': self.LABEL_TYPES[self.label_type](results['label']),
                        'sample_idx': int(results['sample_idx'])}
        for key in self.meta_keys:
            if key in results:
                data_samples[key] = results[key]
        return {'inputs': inputs, 'data_samples': data_samples}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(modalities={self.modalities}, '
                f'meta_keys={self.meta_keys}, sequences={self.sequences}, '
                f'label_type={self.label_type!r})')


__all__ = ['PackMultimodalInputs']
