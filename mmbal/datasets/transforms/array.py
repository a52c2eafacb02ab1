"""Affine rescaling of an array modality (e.g. AV-MNIST's 0-255 spectrograms to [0, 1])."""
from __future__ import annotations

import numpy as np

from mmbal.registry import TRANSFORMS
from .base import MMBalTransform


@TRANSFORMS.register_module()
class ScaleArray(MMBalTransform):
    """``results[key] * scale + offset`` as float32, for arrays of any shape.

    :class:`Normalize` covers frame stacks (T, H, W, C); this covers the rest,
    e.g. a (F, T) spectrogram stored as 0-255 pixels (MultiBench's AV-MNIST
    divides it by 255: ``scale=1/255``).

    Args:
        key (str): Results key of the array.
        scale (float): Multiplier.
        offset (float): Added after scaling.
    """

    is_random = False

    def __init__(self, key: str, scale: float = 1.0, offset: float = 0.0) -> None:
        self.key = key
        self.scale = float(scale)
        self.offset = float(offset)

    def transform(self, results: dict) -> dict:
        """Rescale ``results[key]``."""
        if self.key not in results:
            raise KeyError(f'ScaleArray needs results[{self.key!r}]; keys present: '
                           f'{sorted(results)}')
        x = np.asarray(results[self.key], dtype=np.float32) * np.float32(self.scale)
        if self.offset:
            x += np.float32(self.offset)
        results[self.key] = x
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(key={self.key!r}, scale={self.scale}, '
                f'offset={self.offset})')


__all__ = ['ScaleArray']
