"""Cut a fixed-length window out of a waveform: random while training, fixed at test time."""
from __future__ import annotations

import numpy as np

from mmbal.registry import TRANSFORMS
from .base import MMBalTransform


@TRANSFORMS.register_module()
class CropAudio(MMBalTransform):
    """Keep ``num_samples`` (or ``duration`` seconds) of ``results['audio']``.

    OGM-GE's VGGSound recipe tiles a clip to 10 s and cuts a 5 s window starting
    at a random sample in ``[0, 5 s]``, in training and testing alike. Here the
    start is drawn uniformly from ``[0, N - L]`` (inclusive, NumPy's global
    generator, seeded per worker by MMEngine) when ``test_mode`` is False; with
    ``test_mode`` True the window is fixed so val/test scores do not change
    between runs: ``'center'`` starts at ``(N - L) // 2``, ``'start'`` at 0.
    A waveform shorter than the window is an error (tile or pad it first with
    :class:`LoadAudio`).

    Args:
        num_samples (int | None): Window length in samples.
        duration (float | None): Window length in seconds (``round(duration * sr)``,
            sr from ``results['audio_sample_rate']``); used when ``num_samples`` is None.
        test_mode (bool): Fixed window instead of a random one.
        test_position (str): ``'center'`` or ``'start'``, the fixed window.
        key (str): Results key of the waveform (..., N).

    Added keys: ``audio_crop_start`` (int, first sample kept).
    """

    POSITIONS = ('center', 'start')

    def __init__(self, num_samples: int | None = None, duration: float | None = None,
                 test_mode: bool = False, test_position: str = 'center',
                 key: str = 'audio') -> None:
        if num_samples is None and duration is None:
            raise ValueError('CropAudio needs num_samples or duration')
        if num_samples is not None and num_samples < 1:
            raise ValueError(f'num_samples must be >= 1, got {num_samples}')
        if duration is not None and duration <= 0:
            raise ValueError(f'duration must be > 0 seconds, got {duration}')
        if test_position not in self.POSITIONS:
            raise ValueError(f'test_position must be one of {self.POSITIONS}, '
                             f'got {test_position!r}')
        self.num_samples = None if num_samples is None else int(num_samples)
        self.duration = duration
        self.test_mode = test_mode
        self.test_position = test_position
        self.key = key

    @property
    def is_random(self) -> bool:
        """The window start is drawn each call unless ``test_mode`` fixes it."""
        return not self.test_mode

    def window_length(self, results: dict) -> int:
        """Window length in samples."""
        if self.num_samples is not None:
            return self.num_samples
        if 'audio_sample_rate' not in results:
            raise KeyError("CropAudio(duration=...) needs results['audio_sample_rate'] "
                           f'(set by LoadAudio); keys present: {sorted(results)}')
        return int(round(self.duration * results['audio_sample_rate']))

    def transform(self, results: dict) -> dict:
        """Replace ``results[key]`` (..., N) by its window (..., L)."""
        if self.key not in results:
            raise KeyError(f'CropAudio needs a waveform in results[{self.key!r}]; '
                           f'keys present: {sorted(results)}')
        wav = np.asarray(results[self.key])
        length = self.window_length(results)
        n = wav.shape[-1]
        if n < length:
            raise ValueError(f'CropAudio: waveform of {n} samples is shorter than the '
                             f'{length}-sample window ({results.get("audio_path", "")!r}); '
                             'tile or pad it first (LoadAudio num_samples/pad_mode)')
        slack = n - length
        if not self.test_mode:
            start = int(np.random.randint(0, slack + 1))
        elif self.test_position == 'center':
            start = slack // 2
        else:
            start = 0
        results[self.key] = np.ascontiguousarray(wav[..., start:start + length])
        results['audio_crop_start'] = start
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_samples={self.num_samples}, '
                f'duration={self.duration}, test_mode={self.test_mode}, '
                f'test_position={self.test_position!r})')


__all__ = ['CropAudio']
