"""Load per-segment stacks of consecutive frames from one or more folders (two-stream inputs).

RGB: one folder, ``frames_per_segment=1``, colour -> ``(T, H, W, 3)``.
Optical flow: the ``u`` and ``v`` folders, ``frames_per_segment=K``, greyscale ->
``(T, H, W, 2K)`` with channels ``[u_1, v_1, u_2, v_2, ..., u_K, v_K]`` (frames
in time order, each frame's folders in the order given), the layout of the
two-stream and TSN flow networks. ``T = num_segments``.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from mmbal.registry import TRANSFORMS
from .base import MMBalTransform
from .loading import IMAGE_EXTENSIONS, LoadFrames, _extension, _natural_key, _require_exists
from .media_checks import read_image

_COLOR_TYPES = {'color': cv2.IMREAD_COLOR, 'grayscale': cv2.IMREAD_GRAYSCALE}


@TRANSFORMS.register_module()
class LoadStackedFrames(MMBalTransform):
    """Put ``num_segments`` stacks of ``frames_per_segment`` consecutive frames in ``results[key]``.

    Reads ``results[f'{key}_path']``: one folder or a list of folders holding the
    same number of images (natural order, ``frame2`` before ``frame10``). Stack
    starts are sampled over the ``N - K + 1`` positions where a whole stack fits,
    with :class:`LoadFrames`' strategies; a video shorter than ``K`` repeats its last
    frame. Only the frames used are decoded.

    Args:
        key: Modality name: reads ``<key>_path``, writes ``<key>`` (uint8).
        num_segments: Stacks per sample (``T`` of the output).
        frames_per_segment: Consecutive frames per stack (``K``).
        sampling: ``'uniform'``, ``'segment_start'``, ``'first'`` or ``'random'``.
        test_mode: Makes ``'random'`` deterministic (``'uniform'``).
        color_type: ``'color'`` (RGB, 3 channels per frame) or ``'grayscale'`` (1).

    Added keys: ``<key>`` ((T, H, W, C)), ``<key>_frame_inds`` (int64 (T, K)),
    ``<key>_total_frames``.
    """

    def __init__(self, key: str, num_segments: int = 3, frames_per_segment: int = 1,
                 sampling: str = 'uniform', test_mode: bool = False,
                 color_type: str = 'color') -> None:
        if frames_per_segment < 1:
            raise ValueError(f'frames_per_segment must be >= 1, got {frames_per_segment}')
        if color_type not in _COLOR_TYPES:
            raise ValueError(f'color_type must be one of {sorted(_COLOR_TYPES)}, got '
                             f'{color_type!r}')
        self.key = key
        self.sampler = LoadFrames(num_frames=num_segments, sampling=sampling,
                                  test_mode=test_mode)
        self.frames_per_segment = int(frames_per_segment)
        self.color_type = color_type

    @property
    def is_random(self) -> bool:
        """As the sampling: ``'random'`` outside ``test_mode``."""
        return self.sampler.is_random

    def _names(self, folders: list[str]) -> list[list[str]]:
        names = []
        for folder in folders:
            _require_exists(folder, f'{self.key} frame folder')
            found = sorted((n for n in os.listdir(folder) if _extension(n) in IMAGE_EXTENSIONS),
                           key=_natural_key)
            if not found:
                raise ValueError(f'{self.key} frame folder {folder!r} holds no image files '
                                 f'(expected {"/".join(IMAGE_EXTENSIONS)})')
            names.append(found)
        counts = {len(n) for n in names}
        if len(counts) > 1:
            raise ValueError(f'{self.key} frame folders {folders} hold different numbers of '
                             f'frames {[len(n) for n in names]}; expected the same count')
        return names

    def _read(self, path: str) -> np.ndarray:
        img = read_image(path, _COLOR_TYPES[self.color_type], f'{self.key} frame')
        if img.ndim == 2:
            return img[:, :, None]
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def transform(self, results: dict) -> dict:
        """Read, sample and stack the frames of ``results[f'{key}_path']``."""
        source = f'{self.key}_path'
        if source not in results:
            raise KeyError(f'LoadStackedFrames needs {source!r}; keys present: '
                           f'{sorted(results)}')
        folders = results[source]
        folders = [folders] if isinstance(folders, str) else list(folders)
        names = self._names(folders)
        total = len(names[0])
        k = self.frames_per_segment
        starts = self.sampler.sample_indices(max(1, total - k + 1))
        inds = np.minimum(starts[:, None] + np.arange(k)[None], total - 1)
        cache: dict[tuple[int, int], np.ndarray] = {}
        stacks = []
        for row in inds:
            channels = []
            for i in row:
                for f, folder in enumerate(folders):
                    if (f, i) not in cache:
                        cache[(f, i)] = self._read(os.path.join(folder, names[f][i]))
                    channels.append(cache[(f, i)])
            shapes = {c.shape[:2] for c in channels}
            if len(shapes) > 1:
                raise ValueError(f'{self.key} frames in {folders} differ in size: '
                                 f'{sorted(shapes)}')
            stacks.append(np.concatenate(channels, axis=2))
        if len({s.shape for s in stacks}) > 1:
            raise ValueError(f'{self.key} frames in {folders} differ in size: '
                             f'{sorted({s.shape[:2] for s in stacks})}')
        results[self.key] = np.ascontiguousarray(np.stack(stacks))
        results[f'{self.key}_frame_inds'] = inds.astype(np.int64)
        results[f'{self.key}_total_frames'] = int(total)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(key={self.key!r}, '
                f'num_segments={self.sampler.num_frames}, '
                f'frames_per_segment={self.frames_per_segment}, '
                f'sampling={self.sampler.sampling!r}, test_mode={self.sampler.test_mode}, '
                f'color_type={self.color_type!r})')


__all__ = ['LoadStackedFrames']
