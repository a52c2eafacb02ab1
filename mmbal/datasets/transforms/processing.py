"""Transforms on frame stacks (T, H, W, C) and seeded degradations that build modality imbalance.

Sizes follow mmcv: an int is a square side, a tuple is ``(w, h)`` (torchvision's
``Resize(size=(224, 224))`` is ``(h, w)``; for squares the two agree).
Geometric random transforms draw from NumPy's global generator (seeded per
dataloader worker by MMEngine) and apply one decision to every frame of a sample.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from mmbal.registry import TRANSFORMS
from .base import MMBalTransform

_INTERPOLATIONS = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}


def _to_wh(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f'size must be an int or (w, h), got {size!r}')
    return int(size[0]), int(size[1])


def _interp(name: str) -> int:
    if name not in _INTERPOLATIONS:
        raise ValueError(f'interpolation must be one of {sorted(_INTERPOLATIONS)}, got {name!r}')
    return _INTERPOLATIONS[name]


def _frames(results: dict, key: str) -> np.ndarray:
    if key not in results:
        raise KeyError(f'expected frames in results[{key!r}]; keys present: {sorted(results)}')
    frames = results[key]
    if not isinstance(frames, np.ndarray) or frames.ndim != 4:
        raise ValueError(f'results[{key!r}] must be a (T, H, W, C) array, got '
                         f'{type(frames).__name__} of shape {getattr(frames, "shape", None)}')
    return frames


def resize_frames(frames: np.ndarray, wh: tuple[int, int], interpolation: int) -> np.ndarray:
    """Resize every frame of (T, H, W, C) to (T, h, w, C) with cv2."""
    w, h = wh
    out = np.empty((frames.shape[0], h, w, frames.shape[3]), dtype=frames.dtype)
    for t, frame in enumerate(frames):
        out[t] = cv2.resize(frame, (w, h), interpolation=interpolation).reshape(h, w, -1)
    return out


# dtypes cv2's array functions take; frames of other dtypes go through NumPy.
_CV2_DTYPES = tuple(np.dtype(d) for d in (np.uint8, np.int8, np.uint16, np.int16, np.int32,
                                          np.float32, np.float64))


def flip_frames(frames: np.ndarray, axis: int) -> np.ndarray:
    """Contiguous copy of (T, H, W, C) frames mirrored along ``axis`` (2: left-right, 1: up-down).

    cv2.flip copies whole rows at a time, ~15x faster than NumPy's copy of a reversed view
    (whose innermost run is one C-channel pixel); the result is the same array.
    """
    if frames.dtype not in _CV2_DTYPES:
        return np.ascontiguousarray(np.flip(frames, axis=axis))
    frames = np.ascontiguousarray(frames)
    out = np.empty_like(frames)
    code = 1 if axis == 2 else 0
    for t, frame in enumerate(frames):
        cv2.flip(frame, code, dst=out[t])
    return out


def _set_shape(results: dict, key: str, frames: np.ndarray) -> None:
    results[key] = frames
    results['img_shape'] = tuple(frames.shape[1:3])


@TRANSFORMS.register_module()
class Resize(MMBalTransform):
    """Resize all frames to a fixed ``(w, h)`` or so that the shorter side is ``scale``.

    Args:
        scale (int | tuple[int, int]): ``(w, h)``; an int resizes the shorter side
            to it keeping the aspect ratio.
        interpolation (str): cv2 interpolation name.
        key (str): Results key of the (T, H, W, C) frames.
    """

    is_random = False

    def __init__(self, scale: int | Sequence[int], interpolation: str = 'bilinear',
                 key: str = 'visual') -> None:
        self.scale = scale if isinstance(scale, int) else _to_wh(scale)
        self.interpolation = interpolation
        self._cv_interp = _interp(interpolation)
        self.key = key

    def target_wh(self, h: int, w: int) -> tuple[int, int]:
        """Output (w, h) for an input of height ``h`` and width ``w``."""
        if isinstance(self.scale, tuple):
            return self.scale
        short = self.scale
        if h <= w:
            return max(1, int(round(w * short / h))), short
        return short, max(1, int(round(h * short / w)))

    def transform(self, results: dict) -> dict:
        frames = _frames(results, self.key)
        wh = self.target_wh(*frames.shape[1:3])
        if wh != (frames.shape[2], frames.shape[1]):
            frames = resize_frames(frames, wh, self._cv_interp)
        _set_shape(results, self.key, frames)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class RandomResizedCrop(MMBalTransform):
    """Crop a random area/aspect-ratio box (same for all frames) and resize it to ``size``.

    The box is drawn like torchvision's ``RandomResizedCrop`` (10 tries, then a
    centre crop clamped to ``ratio``), which OGM-GE uses for training.

    Args:
        size (int | tuple[int, int]): Output ``(w, h)``.
        scale (tuple[float, float]): Range of the crop area as a fraction of the frame.
        ratio (tuple[float, float]): Range of the crop's w/h aspect ratio.
        interpolation (str): cv2 interpolation name.
        key (str): Results key of the frames.
    """

    is_random = True  # box drawn from NumPy's global generator

    def __init__(self, size: int | Sequence[int],
                 scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3),
                 interpolation: str = 'bilinear', key: str = 'visual') -> None:
        self.size = _to_wh(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.interpolation = interpolation
        self._cv_interp = _interp(interpolation)
        self.key = key

    def get_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Random crop box ``(top, left, crop_h, crop_w)`` inside an h x w frame."""
        area = h * w
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(log_lo, log_hi))
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = np.random.randint(0, h - ch + 1)
                left = np.random.randint(0, w - cw + 1)
                return int(top), int(left), ch, cw
        in_ratio = w / h
        if in_ratio < min(self.ratio):
            cw, ch = w, int(round(w / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            ch, cw = h, int(round(h * max(self.ratio)))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def transform(self, results: dict) -> dict:
        frames = _frames(results, self.key)
        top, left, ch, cw = self.get_box(*frames.shape[1:3])
        crop = frames[:, top:top + ch, left:left + cw]
        _set_shape(results, self.key, resize_frames(crop, self.size, self._cv_interp))
        results['crop_box'] = (left, top, left + cw, top + ch)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, scale={self.scale}, '
                f'ratio={self.ratio}, interpolation={self.interpolation!r})')


class _FixedCrop(MMBalTransform):
    """Shared code of the crops that keep the pixel scale (``(w, h)`` box)."""

    def __init__(self, size: int | Sequence[int], key: str = 'visual') -> None:
        self.size = _to_wh(size)
        self.key = key

    def offsets(self, h: int, w: int) -> tuple[int, int]:
        raise NotImplementedError

    def transform(self, results: dict) -> dict:
        frames = _frames(results, self.key)
        h, w = frames.shape[1:3]
        cw, ch = self.size
        if cw > w or ch > h:
            raise ValueError(f'{self.__class__.__name__}: crop (w={cw}, h={ch}) is larger '
                             f'than the frames (w={w}, h={h}); resize first')
        top, left = self.offsets(h, w)
        _set_shape(results, self.key, frames[:, top:top + ch, left:left + cw])
        results['crop_box'] = (left, top, left + cw, top + ch)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(size={self.size})'


@TRANSFORMS.register_module()
class CenterCrop(_FixedCrop):
    """Crop the central ``(w, h)`` box of every frame (offsets rounded like torchvision).

    Args:
        size (int | tuple[int, int]): Crop ``(w, h)``.
        key (str): Results key of the frames.
    """

    is_random = False

    def offsets(self, h: int, w: int) -> tuple[int, int]:
        cw, ch = self.size
        return int(round((h - ch) / 2)), int(round((w - cw) / 2))


@TRANSFORMS.register_module()
class RandomCrop(_FixedCrop):
    """Crop a random ``(w, h)`` box, the same for every frame of a sample.

    Args:
        size (int | tuple[int, int]): Crop ``(w, h)``.
        key (str): Results key of the frames.
    """

    is_random = True  # offsets drawn from NumPy's global generator

    def offsets(self, h: int, w: int) -> tuple[int, int]:
        cw, ch = self.size
        return int(np.random.randint(0, h - ch + 1)), int(np.random.randint(0, w - cw + 1))


@TRANSFORMS.register_module()
class RandomFlip(MMBalTransform):
    """Flip all frames of a sample together with probability ``prob``.

    Args:
        prob (float): Flip probability.
        direction (str): ``'horizontal'`` (mirror left-right) or ``'vertical'``.
        key (str): Results key of the frames.

    Added keys: ``flip`` (bool), ``flip_direction``.
    """

    is_random = True  # draws every call, also at prob 0 or 1

    def __init__(self, prob: float = 0.5, direction: str = 'horizontal',
                 key: str = 'visual') -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if direction not in ('horizontal', 'vertical'):
            raise ValueError(f"direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.prob = prob
        self.direction = direction
        self.key = key

    def transform(self, results: dict) -> dict:
        frames = _frames(results, self.key)
        flip = bool(np.random.rand() < self.prob)
        if flip:
            results[self.key] = flip_frames(frames, 2 if self.direction == 'horizontal' else 1)
        results['flip'] = flip
        results['flip_direction'] = self.direction
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(prob={self.prob}, direction={self.direction!r})'


@TRANSFORMS.register_module()
class Normalize(MMBalTransform):
    """Per-channel ``(x - mean) / std`` of the frames; the result is float32.

    Args:
        mean (Sequence[float]): Per-channel mean.
        std (Sequence[float]): Per-channel std.
        to_float (bool): Scale pixels to [0, 1] (divide by 255) first, like
            torchvision's ``ToTensor``, so ``mean``/``std`` are in [0, 1] units
            (ImageNet: ``[0.485, 0.456, 0.406]``, ``[0.229, 0.224, 0.225]``, as in
            OGM-GE). If False, ``mean``/``std`` are in pixel units (mmcv style:
            ``[123.675, 116.28, 103.53]``, ``[58.395, 57.12, 57.375]``).
        key (str): Results key of the (T, H, W, C) frames.
    """

    is_random = False

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_float: bool = True,
                 key: str = 'visual') -> None:
        if len(mean) != len(std):
            raise ValueError(f'mean and std differ in length: {len(mean)} vs {len(std)}')
        if any(s <= 0 for s in std):
            raise ValueError(f'std must be positive, got {list(std)}')
        if to_float and max(abs(m) for m in mean) > 1.0:
            raise ValueError(f'mean {list(mean)} looks like pixel units but to_float=True '
                             'scales pixels to [0, 1] first; pass to_float=False')
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.to_float = to_float
        self.key = key
        # Every uint8 value of every channel, normalised once: (1, 256, C) for cv2.LUT.
        levels = np.repeat(np.arange(256, dtype=np.float32)[:, None], len(self.mean), axis=1)
        self._uint8_table = self._normalize(levels)[None]

    def _normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x [/ 255] - mean) / std`` in float32, in place on a float32 array (..., C)."""
        if self.to_float:
            x /= np.float32(255.0)
        x -= np.asarray(self.mean, dtype=np.float32)
        x /= np.asarray(self.std, dtype=np.float32)
        return x

    def transform(self, results: dict) -> dict:
        frames = _frames(results, self.key)
        if frames.shape[-1] != len(self.mean):
            raise ValueError(f'frames have {frames.shape[-1]} channels but mean/std have '
                             f'{len(self.mean)}')
        if frames.dtype == np.uint8:
            # Look each pixel up in the table made with the same float32 operations: the
            # same bits, ~7x faster than the arithmetic on every pixel.
            t, h, w, c = frames.shape
            flat = np.ascontiguousarray(frames).reshape(t * h, w, c)
            x = cv2.LUT(flat, self._uint8_table).reshape(frames.shape)
        else:
            x = self._normalize(frames.astype(np.float32))
        results[self.key] = x
        results['img_norm_cfg'] = dict(mean=self.mean, std=self.std, to_float=self.to_float)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mean={self.mean}, std={self.std}, '
                f'to_float={self.to_float})')


def _sample_rng(seed: int, results: dict, name: str) -> np.random.Generator:
    """Generator fixed by ``(seed, sample_idx)``: a sample's degradation never changes.

    Both numbers seed a ``SeedSequence`` (rather than their sum), so seed 0 of
    sample 1 and seed 1 of sample 0 do not share noise.
    """
    if 'sample_idx' not in results:
        raise KeyError(f"{name} is seeded per sample and needs results['sample_idx']; "
                       f'keys present: {sorted(results)}')
    return np.random.default_rng([int(seed), int(results['sample_idx'])])


@TRANSFORMS.register_module()
class DegradeImage(MMBalTransform):
    """Degrade frames on purpose, deterministically per sample, to weaken the visual modality.

    Downscale by ``downscale`` (area) and upsample back (bilinear) to the original
    size, then add Gaussian noise of std ``noise_std * 255``, clip to [0, 255]
    (uint8 input stays uint8). Apply before :class:`Normalize`. The noise is
    drawn from a generator seeded by ``(seed, sample_idx)``: val/test samples are
    always degraded the same way, and training is reproducible.
    A no-op (results returned unchanged) at the defaults.

    Args:
        noise_std (float): Noise std as a fraction of the 0-255 range.
        downscale (int): Resolution reduction factor (1 = none).
        seed (int): Base seed.
        key (str): Results key of the (T, H, W, C) frames.
    """

    is_random = False  # noise fixed by (seed, sample_idx)

    def __init__(self, noise_std: float = 0.0, downscale: int = 1, seed: int = 0,
                 key: str = 'visual') -> None:
        if noise_std < 0:
            raise ValueError(f'noise_std must be >= 0, got {noise_std}')
        if downscale < 1 or int(downscale) != downscale:
            raise ValueError(f'downscale must be an integer >= 1, got {downscale}')
        self.noise_std = float(noise_std)
        self.downscale = int(downscale)
        self.seed = int(seed)
        self.key = key

    def transform(self, results: dict) -> dict:
        if self.noise_std == 0.0 and self.downscale == 1:
            return results
        frames = _frames(results, self.key)
        h, w = frames.shape[1:3]
        out = frames
        if self.downscale > 1:
            small = (max(1, w // self.downscale), max(1, h // self.downscale))
            out = resize_frames(resize_frames(frames, small, cv2.INTER_AREA), (w, h),
                                cv2.INTER_LINEAR)
        if self.noise_std > 0.0:
            rng = _sample_rng(self.seed, results, type(self).__name__)
            noisy = out.astype(np.float32)
            noisy += rng.standard_normal(noisy.shape, dtype=np.float32) * np.float32(
                self.noise_std * 255.0)
            np.clip(noisy, 0.0, 255.0, out=noisy)
            out = np.rint(noisy).astype(np.uint8) if frames.dtype == np.uint8 else \
                noisy.astype(frames.dtype, copy=False)
        results[self.key] = out
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(noise_std={self.noise_std}, '
                f'downscale={self.downscale}, seed={self.seed})')


@TRANSFORMS.register_module()
class AddNoiseSNR(MMBalTransform):
    """Add white Gaussian noise to the waveform at ``snr_db`` dB, deterministically per sample.

    The noise is scaled so that ``10 * log10(mean(x**2) / mean(noise**2))``
    equals ``snr_db`` exactly for this clip; it is drawn from a generator seeded
    by ``(seed, sample_idx)``. Use it between :class:`LoadAudio` and the
    spectrogram (or in ``LoadAudioSpectrogram(waveform_transforms=[...])``).
    A silent clip (zero power) has no defined SNR and is left unchanged; the
    result is not clipped (clipping would change the SNR). A no-op at
    ``snr_db=None``.

    Args:
        snr_db (float | None): Target signal-to-noise ratio in dB.
        seed (int): Base seed.
        key (str): Results key of the waveform.
    """

    is_random = False  # noise fixed by (seed, sample_idx)

    def __init__(self, snr_db: float | None = None, seed: int = 0, key: str = 'audio') -> None:
        self.snr_db = None if snr_db is None else float(snr_db)
        self.seed = int(seed)
        self.key = key

    def transform(self, results: dict) -> dict:
        if self.snr_db is None:
            return results
        if self.key not in results:
            raise KeyError(f'AddNoiseSNR needs a waveform in results[{self.key!r}]; '
                           f'keys present: {sorted(results)}')
        wav = np.asarray(results[self.key])
        signal_power = float(np.mean(np.square(wav, dtype=np.float64)))
        if signal_power == 0.0:
            return results
        rng = _sample_rng(self.seed, results, type(self).__name__)
        noise = rng.standard_normal(wav.shape)
        noise *= math.sqrt(signal_power / 10 ** (self.snr_db / 10) / np.mean(noise ** 2))
        results[self.key] = (wav + noise).astype(wav.dtype if wav.dtype.kind == 'f'
                                                 else np.float32)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(snr_db={self.snr_db}, seed={self.seed})'


__all__ = ['Resize', 'RandomResizedCrop', 'CenterCrop', 'RandomCrop', 'RandomFlip',
           'Normalize', 'DegradeImage', 'AddNoiseSNR', 'resize_frames', 'flip_frames']
