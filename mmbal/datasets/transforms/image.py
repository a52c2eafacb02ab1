"""Read one image per modality (e.g. CEFA's RGB, depth and IR faces) as a one-frame stack."""
from __future__ import annotations

import os

import cv2
import numpy as np

from mmbal.registry import TRANSFORMS
from .base import MMBalTransform
from .media_checks import read_image


@TRANSFORMS.register_module()
class LoadModalityImage(MMBalTransform):
    """Read ``results[f'{key}_path']`` into ``results[key]`` as a (1, H, W, C) uint8 stack.

    The one-frame stack lets the frame transforms (:class:`Resize`,
    :class:`Normalize`, crops, flips; all take ``key=``) and
    :class:`PackMultimodalInputs` (-> (C, 1, H, W)) treat the image like a clip.

    Args:
        key (str): Modality name: reads ``results[f'{key}_path']``, writes ``results[key]``.
        color_type (str): ``'color'`` (3 channels, RGB order) or ``'grayscale'``
            (1 channel; a 3-channel file is converted with cv2's BGR->gray weights).

    A file cv2 cannot decode, or a truncated JPEG (which cv2 would fill with grey), is a
    ``ValueError`` naming the file.

    Added keys: ``<key>`` and ``<key>_shape`` ((H, W) as read).
    """

    is_random = False

    COLOR_TYPES = {'color': cv2.IMREAD_COLOR, 'grayscale': cv2.IMREAD_GRAYSCALE}

    def __init__(self, key: str, color_type: str = 'color') -> None:
        if color_type not in self.COLOR_TYPES:
            raise ValueError(f'color_type must be one of {sorted(self.COLOR_TYPES)}, '
                             f'got {color_type!r}')
        self.key = key
        self.color_type = color_type

    def transform(self, results: dict) -> dict:
        """Load the image of modality ``key``."""
        path_key = f'{self.key}_path'
        if path_key not in results:
            raise KeyError(f'LoadModalityImage needs results[{path_key!r}]; keys present: '
                           f'{sorted(results)}')
        path = results[path_key]
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{self.key} image not found: {path!r}')
        img = read_image(path, self.COLOR_TYPES[self.color_type], f'{self.key} image')
        if self.color_type == 'color':
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        else:
            img = img[:, :, None]
        results[self.key] = np.ascontiguousarray(img[None])
        results[f'{self.key}_shape'] = tuple(img.shape[:2])
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(key={self.key!r}, color_type={self.color_type!r})'


__all__ = ['LoadModalityImage']
