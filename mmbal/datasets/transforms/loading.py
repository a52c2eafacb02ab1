"""Transforms that read raw audio and video frames from disk into arrays."""
from __future__ import annotations

import os
import re

import cv2
import numpy as np

from mmbal.registry import TRANSFORMS
from .base import MMBalTransform
from .media_checks import read_image, wav_declared_frames

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.flv', '.m4v',
                    '.mpg', '.mpeg', '.wmv', '.3gp')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def _extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _natural_key(name: str) -> list:
    """Sort key putting ``frame_2`` before ``frame_10``; zero-padded names sort as usual."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r'(\d+)', name)]


def _require_exists(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f'{what} not found: {path!r}')


@TRANSFORMS.register_module()
class LoadAudio(MMBalTransform):
    """Read a waveform from ``results['audio_path']`` and bring it to a fixed rate and length.

    Steps (in the order of OGM-GE's recipes): decode -> mono -> resample ->
    tile -> pad/trim to ``duration`` -> clip to [-1, 1].

    Decoding: soundfile for the formats libsndfile knows (wav, flac, ogg, mp3, ...);
    decord's ``AudioReader`` for video containers (mp4, avi, ...; decord resamples
    to ``sample_rate`` itself there, or the native rate is estimated from the stream);
    ``librosa.load`` for anything else. A WAV that holds fewer frames than its
    RIFF header declares (a truncated file, which libsndfile reads short without an
    error) raises ``ValueError`` naming the file instead of being zero-padded.

    Args:
        sample_rate (int | None): Target rate in Hz; None keeps the file's rate.
            Resampling uses ``librosa.resample`` with its default ``res_type``.
        duration (float | None): Output length in seconds (``round(duration * sr)``
            samples); None keeps the length.
        num_samples (int | None): Output length in samples; overrides ``duration``.
            Handy for recipes defined by a sample count (AVE/KS: 160,000).
        tile (int): Repeat the waveform this many times before cutting to length
            (OGM-GE's CREMA-D recipe tiles x3 and keeps 3 s).
        mono (bool): Average channels to a 1-D waveform. If False, the output
            is (C, N).
        pad_mode (str): How to lengthen a too-short waveform: ``'zero'`` appends
            zeros, ``'repeat'`` tiles the waveform until it is long enough.
        clip (bool): Clip samples to [-1, 1] as the reference recipes do.

    Added keys: ``audio`` (float32, (N,) or (C, N)), ``audio_sample_rate`` (int),
    ``audio_num_samples_orig`` (samples per channel before tiling and cutting).
    """

    is_random = False

    def __init__(self,
                 sample_rate: int | None = None,
                 duration: float | None = None,
                 tile: int = 1,
                 mono: bool = True,
                 pad_mode: str = 'zero',
                 num_samples: int | None = None,
                 clip: bool = False) -> None:
        if tile < 1:
            raise ValueError(f'tile must be >= 1, got {tile}')
        if pad_mode not in ('zero', 'repeat'):
            raise ValueError(f"pad_mode must be 'zero' or 'repeat', got {pad_mode!r}")
        if duration is not None and duration <= 0:
            raise ValueError(f'duration must be > 0 seconds, got {duration}')
        if num_samples is not None and num_samples <= 0:
            raise ValueError(f'num_samples must be > 0, got {num_samples}')
        self.sample_rate = None if sample_rate is None else int(sample_rate)
        self.duration = duration
        self.num_samples = num_samples
        self.tile = int(tile)
        self.mono = mono
        self.pad_mode = pad_mode
        self.clip = clip

    # -- decoding ---------------------------------------------------------------
    def _decode(self, path: str) -> tuple[np.ndarray, int]:
        """Return ((C, N) float32, rate); raise ValueError naming the file on failure."""
        _require_exists(path, 'audio file')
        import soundfile as sf

        ext = _extension(path)
        sf_formats = sf.available_formats()
        declared = None
        try:
            if ext.lstrip('.').upper() in sf_formats or ext in ('.wav', '.flac', '.ogg'):
                data, rate = sf.read(path, dtype='float32', always_2d=True)
                wav = data.T
                declared = wav_declared_frames(path)
            elif ext in VIDEO_EXTENSIONS:
                wav, rate = self._decode_video(path)
            else:
                import librosa
                wav, rate = librosa.load(path, sr=None, mono=False)
                wav = np.atleast_2d(wav)
        except Exception as err:  # decoders raise many types; report them uniformly
            raise ValueError(
                f'Could not decode audio file {path!r} ({type(err).__name__}: {err}); '
                'expected a readable audio file with >0 samples') from err
        if declared is not None and wav.shape[-1] < declared:
            raise ValueError(
                f'Audio file {path!r} is truncated: its WAV header declares {declared} '
                f'frames but only {wav.shape[-1]} are in the file; expected the complete '
                'file (re-extract or re-copy it)')
        if wav.size == 0:
            raise ValueError(
                f'Audio file {path!r} has 0 samples; expected a readable audio file '
                'with >0 samples')
        return np.asarray(wav, dtype=np.float32), int(rate)

    def _decode_video(self, path: str) -> tuple[np.ndarray, int]:
        """Read the audio track of a video container with decord."""
        import decord

        target = self.sample_rate if self.sample_rate is not None else -1
        # decord's mono downmix is right; its multi-channel output is wrong for 5.1
        # tracks (checked on a real 5.1 clip against PyAV), so ask for mono whenever
        # mono is wanted.
        reader = decord.AudioReader(path, ctx=decord.cpu(0), sample_rate=target,
                                    mono=self.mono)
        wav = np.atleast_2d(np.asarray(reader._array, dtype=np.float32))
        if target > 0:
            return wav, target
        # decord reports -1 when not resampling; the stream duration gives the rate.
        duration = float(reader.duration())
        if duration <= 0:
            raise ValueError('audio stream reports a non-positive duration')
        return wav, int(round(wav.shape[-1] / duration))

    # -- shaping ----------------------------------------------------------------
    def _target_length(self, rate: int) -> int | None:
        if self.num_samples is not None:
            return int(self.num_samples)
        if self.duration is not None:
            return int(round(self.duration * rate))
        return None

    def _fit_length(self, wav: np.ndarray, length: int) -> np.ndarray:
        n = wav.shape[-1]
        if n >= length:
            return wav[..., :length]
        if self.pad_mode == 'repeat':
            reps = -(-length // n)
            return np.tile(wav, (1, reps))[..., :length]
        out = np.zeros(wav.shape[:-1] + (length,), dtype=wav.dtype)
        out[..., :n] = wav
        return out

    def transform(self, results: dict) -> dict:
        """Load ``results['audio_path']`` into ``results['audio']``."""
        path = results['audio_path']
        wav, rate = self._decode(path)
        results['audio_num_samples_orig'] = int(wav.shape[-1])
        if self.mono and wav.shape[0] > 1:
            wav = wav.mean(axis=0, keepdims=True)
        if self.sample_rate is not None and rate != self.sample_rate:
            import librosa
            wav = librosa.resample(wav, orig_sr=rate, target_sr=self.sample_rate, axis=-1)
            rate = self.sample_rate
        if self.tile > 1:
            wav = np.tile(wav, (1, self.tile))
        length = self._target_length(rate)
        if length is not None:
            wav = self._fit_length(wav, length)
        if self.clip:
            wav = np.clip(wav, -1.0, 1.0)
        if self.mono:
            wav = wav[0]
        results['audio'] = np.ascontiguousarray(wav, dtype=np.float32)
        results['audio_sample_rate'] = int(rate)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(sample_rate={self.sample_rate}, '
                f'duration={self.duration}, num_samples={self.num_samples}, '
                f'tile={self.tile}, mono={self.mono}, pad_mode={self.pad_mode!r}, '
                f'clip={self.clip})')


@TRANSFORMS.register_module()
class LoadFrames(MMBalTransform):
    """Sample ``num_frames`` RGB frames from ``results['visual_path']`` or ``results['visual']``.

    Sources, in order of precedence:

    - ``results['visual']`` already an array (T, H, W, C) (or one (H, W, C) image):
      only the frame sampling is applied.
    - ``visual_path`` a directory of images: file names in natural order
      (``frame_2`` before ``frame_10``); only sampled frames are decoded (cv2, as RGB;
      a truncated JPEG, which cv2 would fill with grey, is an error naming the file).
    - ``visual_path`` a single image file: one frame (repeated if ``num_frames`` > 1).
    - ``visual_path`` a video file: decoded with decord, only the sampled frames.

    Sampling over T available frames:

    - ``'uniform'``: the centre of each of ``num_frames`` equal segments,
      ``floor((i + 0.5) * T / num_frames)``; deterministic.
    - ``'segment_start'``: the start of each segment, ``i * (T // num_frames)``,
      as OGM-GE's AVE loader picks frames.
    - ``'first'``: the first ``num_frames`` frames (the last one repeats if T is short).
    - ``'random'``: one random frame per segment (TSN-style) for training; falls back
      to ``'uniform'`` when ``test_mode`` is True.

    Args:
        num_frames (int): Frames to keep.
        sampling (str): One of the strategies above.
        test_mode (bool): Make ``'random'`` deterministic (``'uniform'``).

    Added keys: ``visual`` (uint8 (num_frames, H, W, C)), ``frame_inds`` (int64 array),
    ``total_frames`` (int), ``img_shape`` ((H, W)).
    """

    SAMPLINGS = ('uniform', 'segment_start', 'first', 'random')

    def __init__(self, num_frames: int = 1, sampling: str = 'uniform',
                 test_mode: bool = False) -> None:
        if num_frames < 1:
            raise ValueError(f'num_frames must be >= 1, got {num_frames}')
        if sampling not in self.SAMPLINGS:
            raise ValueError(f'sampling must be one of {self.SAMPLINGS}, got {sampling!r}')
        self.num_frames = int(num_frames)
        self.sampling = sampling
        self.test_mode = test_mode

    @property
    def is_random(self) -> bool:
        """``'random'`` sampling draws frames each call, except in ``test_mode`` (uniform)."""
        return self.sampling == 'random' and not self.test_mode

    def sample_indices(self, total: int) -> np.ndarray:
        """Indices (num_frames,) into ``total`` frames according to ``sampling``."""
        if total < 1:
            raise ValueError('cannot sample frames from an empty frame sequence')
        n = self.num_frames
        mode = self.sampling
        if mode == 'random' and self.test_mode:
            mode = 'uniform'
        if mode == 'uniform':
            inds = np.floor((np.arange(n) + 0.5) * total / n)
        elif mode == 'segment_start':
            inds = np.arange(n) * (total // n)
        elif mode == 'first':
            inds = np.arange(n)
        else:  # random: one frame drawn inside each of n equal segments
            edges = np.arange(n + 1) * total / n
            starts = np.floor(edges[:-1]).astype(np.int64)
            ends = np.maximum(np.floor(edges[1:]).astype(np.int64), starts + 1)
            inds = np.random.randint(starts, ends)
        return np.minimum(inds.astype(np.int64), total - 1)

    # -- sources ----------------------------------------------------------------
    @staticmethod
    def _read_image(path: str) -> np.ndarray:
        return cv2.cvtColor(read_image(path, cv2.IMREAD_COLOR, 'frame'), cv2.COLOR_BGR2RGB)

    def _from_dir(self, folder: str) -> tuple[np.ndarray, np.ndarray, int]:
        names = sorted((n for n in os.listdir(folder) if _extension(n) in IMAGE_EXTENSIONS),
                       key=_natural_key)
        if not names:
            raise ValueError(f'Frame folder {folder!r} holds no image files '
                             f'(expected {"/".join(IMAGE_EXTENSIONS)})')
        inds = self.sample_indices(len(names))
        cache: dict[int, np.ndarray] = {}
        frames = []
        for i in inds:
            if i not in cache:
                cache[i] = self._read_image(os.path.join(folder, names[i]))
            frames.append(cache[i])
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise ValueError(f'Frames in {folder!r} differ in size: {sorted(shapes)}')
        return np.stack(frames), inds, len(names)

    def _from_video(self, path: str) -> tuple[np.ndarray, np.ndarray, int]:
        import decord
        try:
            reader = decord.VideoReader(path, ctx=decord.cpu(0))
            total = len(reader)
            if total < 1:
                raise ValueError('video has no frames')
            inds = self.sample_indices(total)
            frames = reader.get_batch(inds.tolist()).asnumpy()
        except Exception as err:
            raise ValueError(f'Could not decode video {path!r} ({type(err).__name__}: '
                             f'{err}); expected a readable video with >0 frames') from err
        return frames, inds, total

    def transform(self, results: dict) -> dict:
        """Put sampled frames (T, H, W, C) in ``results['visual']``."""
        visual = results.get('visual')
        if isinstance(visual, np.ndarray):
            if visual.ndim == 3:
                visual = visual[None]
            if visual.ndim != 4:
                raise ValueError(f"results['visual'] must be (T, H, W, C), got shape "
                                 f'{visual.shape}')
            total = visual.shape[0]
            inds = self.sample_indices(total)
            frames = visual[inds]
        else:
            if 'visual_path' not in results:
                raise KeyError("LoadFrames needs 'visual_path' or an array in 'visual'; "
                               f'keys present: {sorted(results)}')
            path = results['visual_path']
            _require_exists(path, 'visual source')
            if os.path.isdir(path):
                frames, inds, total = self._from_dir(path)
            elif _extension(path) in IMAGE_EXTENSIONS:
                image = self._read_image(path)
                total = 1
                inds = self.sample_indices(1)
                frames = np.repeat(image[None], self.num_frames, axis=0)
            else:
                frames, inds, total = self._from_video(path)
        results['visual'] = np.ascontiguousarray(frames)
        results['frame_inds'] = inds
        results['total_frames'] = int(total)
        results['img_shape'] = tuple(frames.shape[1:3])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_frames={self.num_frames}, '
                f'sampling={self.sampling!r}, test_mode={self.test_mode})')


__all__ = ['LoadAudio', 'LoadFrames']
