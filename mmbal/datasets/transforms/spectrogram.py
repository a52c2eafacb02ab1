"""Log-magnitude spectrograms of waveforms, and a cached load+spectrogram transform.

Two reference recipes (OGM-GE, CVPR 2022) are available as presets of
:class:`LoadAudioSpectrogram` (``preset='crema-d'`` / ``preset='ave-ks'``):

- **CREMA-D**: load at 22.05 kHz, tile x3, keep 3 s (66,150 samples), clip to
  [-1, 1], ``librosa.stft(n_fft=512, hop_length=353)`` (hann, centred,
  zero padding), ``log(|X| + 1e-7)``, no normalisation -> **257 x 188**.
  The papers write "257x299"; that size does not follow from this recipe
  (it is what produced the published numbers, so it is the default).
  A longer clip or a smaller hop gives more frames: T = 1 + N // hop_length.
- **AVE / Kinetics-Sounds**: load at 22.05 kHz, tile x10, keep 160,000 samples,
  clip, ``scipy.signal.spectrogram(x, fs, nperseg=512, noverlap=353)`` (power
  spectral density, scipy's default Tukey(0.25) window and per-segment mean
  removal, not centred), ``log(S + 1e-7)``, per-clip mean/std
  standardisation -> **257 x 1004**.

Why the cache is a combined transform: a cache hit must skip both the audio
decode and the STFT, so the object that checks the cache has to run before
the decode and know every parameter that shapes the result. A separate
``Spectrogram`` reading ``audio_path`` behind the loader's back would need the
loader to become lazy and to hand its parameters over through ``results``.
:class:`LoadAudioSpectrogram` owns a :class:`LoadAudio`, optional
deterministic waveform transforms (e.g. :class:`AddNoiseSNR`) and a
spectrogram transform, so the key is built from real objects. ``Spectrogram``
and ``ScipySpectrogram`` stay pure array -> array transforms with no cache.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any, Sequence

import numpy as np
import torch

from mmbal.registry import TRANSFORMS
from ..npz_cache import (entry_path, file_content_hash, library_versions, read_npz_entry,
                         save_npz_atomic, transform_params)
from .base import MMBalTransform
from .loading import LoadAudio

_DTYPES = {'float32': np.float32, 'float64': np.float64}


def _resolve_dtype(dtype: str | None) -> type | None:
    if dtype is None:
        return None
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}")
    return _DTYPES[dtype]


def _compute_dtype(wav: np.ndarray, out_dtype: type | None, compute: str) -> type:
    """float64 if asked for, or if the input or the requested output is float64."""
    if compute not in _DTYPES:
        raise ValueError(f"compute_dtype must be 'float32' or 'float64', got {compute!r}")
    if compute == 'float64' or wav.dtype == np.float64 or out_dtype is np.float64:
        return np.float64
    return np.float32


def _standardise(spec: np.ndarray) -> np.ndarray:
    """Per-clip ``(x - mean) / (std + 1e-9)`` over all bins, as OGM-GE does."""
    return (spec - spec.mean()) / (spec.std() + 1e-9)


def _log_finish(power_or_mag: np.ndarray, log_offset: float, normalize: bool,
                out_dtype: type | None) -> np.ndarray:
    """``log(x + offset)``, optional per-clip standardisation, output dtype, contiguous."""
    spec = np.log(power_or_mag + log_offset)
    if normalize:
        spec = _standardise(spec)
    if out_dtype is not None:
        spec = spec.astype(out_dtype, copy=False)
    return np.ascontiguousarray(spec)


def _get_waveform(results: dict, key: str) -> np.ndarray:
    if key not in results:
        raise KeyError(f'Spectrogram needs a waveform in results[{key!r}]; '
                       f'keys present: {sorted(results)}')
    wav = np.asarray(results[key])
    if wav.ndim < 1 or wav.shape[-1] == 0:
        raise ValueError(f'results[{key!r}] must be a non-empty waveform (..., N), '
                         f'got shape {wav.shape}')
    return wav


@TRANSFORMS.register_module()
class Spectrogram(MMBalTransform):
    """``log(|STFT(x)|**power + log_offset)`` of ``results['audio']``: (N,) -> (F, T).

    With the defaults it equals OGM-GE's CREMA-D feature
    ``np.log(np.abs(librosa.stft(y, n_fft=512, hop_length=353)) + 1e-7)``:
    periodic hann window and centred frames padded with zeros
    (``pad_mode='constant'``, librosa's default; torch's default ``'reflect'``
    changes the edge frames). F = n_fft // 2 + 1, T = 1 + N // hop_length.

    Precision: the STFT runs in float64 by default, also for float32 waveforms
    (then agrees with float64 librosa to ~1e-11 before the output cast). A
    float32 ``torch.stft`` has absolute errors ~1e-6 that the log turns into
    errors up to ~2 in the weakest bins (|X| near ``log_offset``), while
    librosa's float32 STFT stays within ~1e-6 of float64 there; float64 costs
    ~0.1 ms more per 3 s clip. ``compute_dtype='float32'`` trades that away.

    Args:
        n_fft (int): FFT size.
        hop_length (int): Hop between frames in samples.
        win_length (int | None): Window length (<= n_fft, centred); None = n_fft.
        window (str): ``'hann'``, ``'hamming'``, ``'blackman'`` or ``'ones'``/``'boxcar'``.
        center (bool): Pad ``n_fft // 2`` on both sides so frame t is centred at t * hop.
        pad_mode (str): Padding for ``center``; ``'constant'`` (zeros) or ``'reflect'``.
        log_offset (float): Added before the log.
        power (float): 1 for magnitude, 2 for power.
        normalize (bool): Per-clip ``(x - mean) / (std + 1e-9)`` standardisation.
        backend (str): ``'torch'`` (``torch.stft``) or ``'librosa'``.
        dtype (str | None): Output dtype, ``'float32'`` (default, the pipeline
            convention) or ``'float64'``; None keeps the computation dtype.
        compute_dtype (str): ``'float64'`` (default) or ``'float32'``; a float64
            waveform or output is always computed in float64.
        key (str): Results key holding the waveform; overwritten with the spectrogram.
    """

    is_random = False

    def __init__(self,
                 n_fft: int = 512,
                 hop_length: int = 353,
                 win_length: int | None = None,
                 window: str = 'hann',
                 center: bool = True,
                 pad_mode: str = 'constant',
                 log_offset: float = 1e-7,
                 power: float = 1.0,
                 normalize: bool = False,
                 backend: str = 'torch',
                 dtype: str | None = 'float32',
                 compute_dtype: str = 'float64',
                 key: str = 'audio') -> None:
        if backend not in ('torch', 'librosa'):
            raise ValueError(f"backend must be 'torch' or 'librosa', got {backend!r}")
        if window not in ('hann', 'hamming', 'blackman', 'ones', 'boxcar'):
            raise ValueError(f'unsupported window {window!r}')
        if win_length is not None and win_length > n_fft:
            raise ValueError(f'win_length ({win_length}) must be <= n_fft ({n_fft})')
        _resolve_dtype(dtype)
        _resolve_dtype(compute_dtype)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.win_length = None if win_length is None else int(win_length)
        self.window = window
        self.center = center
        self.pad_mode = pad_mode
        self.log_offset = float(log_offset)
        self.power = float(power)
        self.normalize = normalize
        self.backend = backend
        self.dtype = dtype
        self.compute_dtype = compute_dtype
        self.key = key
        self._windows: dict[Any, torch.Tensor] = {}

    def _torch_window(self, dtype: torch.dtype) -> torch.Tensor:
        """Periodic window (like ``scipy.signal.get_window(..., fftbins=True)``), memoised."""
        if dtype not in self._windows:
            length = self.win_length or self.n_fft
            if self.window == 'hann':
                win = torch.hann_window(length, periodic=True, dtype=dtype)
            elif self.window == 'hamming':
                win = torch.hamming_window(length, periodic=True, dtype=dtype)
            elif self.window == 'blackman':
                win = torch.blackman_window(length, periodic=True, dtype=dtype)
            else:
                win = torch.ones(length, dtype=dtype)
            self._windows[dtype] = win
        return self._windows[dtype]

    def _magnitude(self, wav: np.ndarray) -> np.ndarray:
        if self.backend == 'librosa':
            import librosa
            window = 'boxcar' if self.window == 'ones' else self.window
            stft = librosa.stft(wav, n_fft=self.n_fft, hop_length=self.hop_length,
                                win_length=self.win_length, window=window,
                                center=self.center, pad_mode=self.pad_mode)
            return np.abs(stft)
        signal = torch.from_numpy(np.ascontiguousarray(wav))
        lead = signal.shape[:-1]
        signal = signal.reshape(-1, signal.shape[-1])
        stft = torch.stft(signal, n_fft=self.n_fft, hop_length=self.hop_length,
                          win_length=self.win_length,
                          window=self._torch_window(signal.dtype), center=self.center,
                          pad_mode=self.pad_mode, normalized=False, onesided=True,
                          return_complex=True)
        mag = stft.abs()
        return mag.reshape(lead + mag.shape[-2:]).numpy()

    def compute(self, wav: np.ndarray) -> np.ndarray:
        """Spectrogram (..., F, T) of a waveform (..., N)."""
        out_dtype = _resolve_dtype(self.dtype)
        wav = np.asarray(wav, dtype=_compute_dtype(wav, out_dtype, self.compute_dtype))
        mag = self._magnitude(wav)
        if self.power != 1.0:
            mag = mag ** self.power
        return _log_finish(mag, self.log_offset, self.normalize, out_dtype)

    def transform(self, results: dict) -> dict:
        """Replace the waveform in ``results[key]`` with its (F, T) spectrogram."""
        results[self.key] = self.compute(_get_waveform(results, self.key))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(n_fft={self.n_fft}, '
                f'hop_length={self.hop_length}, win_length={self.win_length}, '
                f'window={self.window!r}, center={self.center}, '
                f'pad_mode={self.pad_mode!r}, log_offset={self.log_offset}, '
                f'power={self.power}, normalize={self.normalize}, '
                f'backend={self.backend!r}, dtype={self.dtype!r}, '
                f'compute_dtype={self.compute_dtype!r})')


@TRANSFORMS.register_module()
class ScipySpectrogram(MMBalTransform):
    """OGM-GE's AVE/KS feature: ``log(scipy.signal.spectrogram(x) + 1e-7)``, standardised.

    ``scipy.signal.spectrogram`` with scipy's defaults is used as the reference
    did: Tukey(0.25) window, per-segment mean removal (``detrend='constant'``),
    power spectral density scaled by the sample rate, no centring. So T =
    1 + (N - nperseg) // (nperseg - noverlap): 160,000 samples -> 257 x 1004.
    The sample rate comes from ``results['audio_sample_rate']`` (it scales the
    density) unless ``fs`` is given.

    Args:
        nperseg (int): Segment (window) length.
        noverlap (int): Overlap between segments (hop = nperseg - noverlap).
        window (str | tuple): scipy window spec.
        detrend (str | bool): scipy detrend per segment.
        scaling (str): ``'density'`` or ``'spectrum'``.
        mode (str): scipy mode; ``'psd'`` gives power.
        log_offset (float): Added before the log.
        normalize (bool): Per-clip ``(x - mean) / (std + 1e-9)``.
        fs (float | None): Sample rate; None reads ``results['audio_sample_rate']``.
        dtype (str | None): Output dtype (``'float32'`` default).
        compute_dtype (str): ``'float64'`` (default) or ``'float32'`` (what the
            reference got from librosa's float32 waveform; differs in the weakest bins).
        key (str): Results key holding the waveform.
    """

    is_random = False

    def __init__(self,
                 nperseg: int = 512,
                 noverlap: int = 353,
                 window: str | tuple = ('tukey', 0.25),
                 detrend: str | bool = 'constant',
                 scaling: str = 'density',
                 mode: str = 'psd',
                 log_offset: float = 1e-7,
                 normalize: bool = True,
                 fs: float | None = None,
                 dtype: str | None = 'float32',
                 compute_dtype: str = 'float64',
                 key: str = 'audio') -> None:
        if not 0 <= noverlap < nperseg:
            raise ValueError(f'need 0 <= noverlap < nperseg, got {noverlap}, {nperseg}')
        _resolve_dtype(dtype)
        _resolve_dtype(compute_dtype)
        self.nperseg = int(nperseg)
        self.noverlap = int(noverlap)
        self.window = tuple(window) if isinstance(window, list) else window
        self.detrend = detrend
        self.scaling = scaling
        self.mode = mode
        self.log_offset = float(log_offset)
        self.normalize = normalize
        self.fs = fs
        self.dtype = dtype
        self.compute_dtype = compute_dtype
        self.key = key

    def compute(self, wav: np.ndarray, fs: float) -> np.ndarray:
        """Spectrogram (..., F, T) of a waveform (..., N) sampled at ``fs``."""
        from scipy import signal
        out_dtype = _resolve_dtype(self.dtype)
        wav = np.asarray(wav, dtype=_compute_dtype(wav, out_dtype, self.compute_dtype))
        if wav.shape[-1] < self.nperseg:
            raise ValueError(f'waveform has {wav.shape[-1]} samples, fewer than '
                             f'nperseg={self.nperseg}')
        _, _, spec = signal.spectrogram(wav, fs, window=self.window, nperseg=self.nperseg,
                                        noverlap=self.noverlap, detrend=self.detrend,
                                        scaling=self.scaling, mode=self.mode)
        return _log_finish(spec, self.log_offset, self.normalize, out_dtype)

    def transform(self, results: dict) -> dict:
        """Replace the waveform in ``results[key]`` with its (F, T) spectrogram."""
        fs = self.fs
        if fs is None:
            if 'audio_sample_rate' not in results:
                raise KeyError("ScipySpectrogram needs fs= or results['audio_sample_rate'] "
                               f'(set by LoadAudio); keys present: {sorted(results)}')
            fs = results['audio_sample_rate']
        results[self.key] = self.compute(_get_waveform(results, self.key), float(fs))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(nperseg={self.nperseg}, '
                f'noverlap={self.noverlap}, window={self.window!r}, '
                f'detrend={self.detrend!r}, scaling={self.scaling!r}, mode={self.mode!r}, '
                f'log_offset={self.log_offset}, normalize={self.normalize}, fs={self.fs}, '
                f'dtype={self.dtype!r}, compute_dtype={self.compute_dtype!r})')


# -- cache ----------------------------------------------------------------------

_LIBRARIES = ('librosa', 'scipy', 'torch')  # they resample and transform: an upgrade starts afresh


PRESETS: dict[str, dict] = {
    'crema-d': dict(
        load=dict(sample_rate=22050, duration=3.0, tile=3, clip=True),
        spec=dict(type='Spectrogram', n_fft=512, hop_length=353)),
    'ave-ks': dict(
        load=dict(sample_rate=22050, num_samples=160_000, tile=10, pad_mode='repeat',
                  clip=True),
        spec=dict(type='ScipySpectrogram', nperseg=512, noverlap=353)),
}


@TRANSFORMS.register_module()
class LoadAudioSpectrogram(MMBalTransform):
    """Load ``results['audio_path']`` and turn it into a spectrogram, with an optional disk cache.

    Equivalent to ``LoadAudio(**load)`` -> ``waveform_transforms`` -> ``spec``,
    but when ``cache_dir`` is set a cached result skips the decode and the STFT.

    Cache key: sha1 over the sha1 of the audio file's bytes (memoised per
    process), the type and parameters of the loader, of every waveform transform
    and of the spectrogram transform, the librosa/scipy/torch versions, a
    format version, and ``sample_idx`` when waveform transforms are present
    (e.g. :class:`AddNoiseSNR` is seeded per sample). Entries are
    ``cache_dir/<key[:2]>/<key>.npz`` (one array ``spec``, stored uncompressed),
    written to a temp file and ``os.replace``-d, so concurrent dataloader workers
    never read a partial file. Each entry also stores a 64-bit checksum of the array
    (:func:`mmbal.datasets.npz_cache.array_checksum`), checked on every read: an
    entry that is truncated or corrupt (e.g. bytes changed on disk) is logged as a
    warning naming the file, recomputed and overwritten. Waveform transforms
    must be deterministic given ``(waveform, sample_idx)``; random augmentations
    belong after this transform (on the spectrogram) or in an uncached pipeline.

    Presets (``preset=``; ``load``/``spec`` entries override them):

    - ``'crema-d'``: 22.05 kHz, tile 3, 3 s, clip, ``Spectrogram(512, 353)`` -> 257 x 188.
    - ``'ave-ks'``: 22.05 kHz, tile 10, 160,000 samples, clip,
      ``ScipySpectrogram(512, 353)`` -> 257 x 1004.

    Example::

        dict(type='LoadAudioSpectrogram', preset='crema-d', cache_dir='data/cache/crema')

    Args:
        load (dict | None): :class:`LoadAudio` arguments.
        spec (dict | None): Spectrogram transform config (``type`` defaults to ``'Spectrogram'``).
        waveform_transforms (list[dict] | None): Transforms applied to the
            waveform between loading and the spectrogram.
        cache_dir (str | None): Directory of the cache; None disables it.
            Caching needs a fixed ``load['sample_rate']``.
        preset (str | None): ``'crema-d'`` or ``'ave-ks'``.

    Added keys: ``audio`` (float32 (F, T)), ``audio_sample_rate``.
    """

    is_random = False  # itself; its sub_transforms() are judged on their own

    CACHE_VERSION = 3  # 3: .npz with spec + checksum; 2: .npz, CRC-32; 1: bare .npy

    def __init__(self,
                 load: dict | None = None,
                 spec: dict | None = None,
                 waveform_transforms: Sequence[dict] | None = None,
                 cache_dir: str | None = None,
                 preset: str | None = None) -> None:
        load_cfg: dict = {}
        spec_cfg: dict = {'type': 'Spectrogram'}
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f'unknown preset {preset!r}; choose from {sorted(PRESETS)}')
            load_cfg.update(copy.deepcopy(PRESETS[preset]['load']))
            spec_cfg.update(copy.deepcopy(PRESETS[preset]['spec']))
        load_cfg.update(load or {})
        if spec and 'type' in spec and spec['type'] != spec_cfg['type']:
            spec_cfg = {}  # a different spectrogram type: do not mix preset arguments in
        spec_cfg.update(spec or {})
        spec_cfg.setdefault('type', 'Spectrogram')
        self.preset = preset
        self.loader = LoadAudio(**load_cfg)
        self.spec = TRANSFORMS.build(spec_cfg)
        self.waveform_transforms = [TRANSFORMS.build(cfg) if isinstance(cfg, dict) else cfg
                                    for cfg in (waveform_transforms or [])]
        if cache_dir is not None and self.loader.sample_rate is None:
            raise ValueError('LoadAudioSpectrogram with cache_dir needs a fixed '
                             "load['sample_rate'] (the cached entry must not depend "
                             "on each file's native rate)")
        self.cache_dir = cache_dir
        # Counters are private (read through properties): they are not parameters, and the
        # dataset's sample cache keys a transform by its public attributes.
        self._cache_hits = 0
        self._cache_misses = 0

    @property
    def cache_hits(self) -> int:
        """Entries read from the cache by this object (in this process)."""
        return self._cache_hits

    @property
    def cache_misses(self) -> int:
        """Entries computed (and written) by this object (in this process)."""
        return self._cache_misses

    def cache_key(self, results: dict) -> str:
        """Hex sha1 naming the cache entry of this sample."""
        parts: dict[str, Any] = {
            'version': self.CACHE_VERSION,
            'audio_sha1': file_content_hash(results['audio_path']),
            'load': transform_params(self.loader),
            'waveform_transforms': [transform_params(t) for t in self.waveform_transforms],
            'spec': transform_params(self.spec),
            'libraries': library_versions(_LIBRARIES),
        }
        if self.waveform_transforms:
            parts['sample_idx'] = int(results['sample_idx'])
        blob = json.dumps(parts, sort_keys=True, default=repr)
        return hashlib.sha1(blob.encode()).hexdigest()

    def sub_transforms(self) -> list:
        """The loader, the waveform transforms and the spectrogram transform, in order."""
        return [self.loader, *self.waveform_transforms, self.spec]

    def _cache_path(self, key: str) -> str:
        return entry_path(self.cache_dir, key)

    @property
    def _out_key(self) -> str:
        return getattr(self.spec, 'key', 'audio')

    def _compute(self, results: dict) -> dict:
        results = self.loader(results)
        for t in self.waveform_transforms:
            results = t(results)
        results = self.spec(results)
        # Same output keys whether or not the cache was hit.
        results.pop('audio_num_samples_orig', None)
        return results

    def transform(self, results: dict) -> dict:
        """Put the (F, T) spectrogram of ``results['audio_path']`` in ``results['audio']``."""
        if self.cache_dir is None:
            return self._compute(results)
        if 'audio_path' not in results:
            raise KeyError("LoadAudioSpectrogram needs results['audio_path']; keys present: "
                           f'{sorted(results)}')
        if not os.path.exists(results['audio_path']):
            raise FileNotFoundError(f"audio file not found: {results['audio_path']!r}")
        path = self._cache_path(self.cache_key(results))
        if os.path.exists(path):
            spec = read_npz_entry(path, 'LoadAudioSpectrogram', lambda entry: entry['spec'])
            if spec is not None:
                self._cache_hits += 1
                results[self._out_key] = spec
                results['audio_sample_rate'] = self.loader.sample_rate
                return results
        self._cache_misses += 1
        results = self._compute(results)
        save_npz_atomic(path, dict(spec=results[self._out_key]))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(load={self.loader!r}, '
                f'waveform_transforms={self.waveform_transforms!r}, spec={self.spec!r}, '
                f'cache_dir={self.cache_dir!r})')


__all__ = ['Spectrogram', 'ScipySpectrogram', 'LoadAudioSpectrogram', 'file_content_hash',
           'PRESETS']
