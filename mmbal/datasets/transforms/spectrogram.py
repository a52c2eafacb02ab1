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
import struct
import tempfile
import threading
import zipfile
from typing import Any, BinaryIO, Sequence

import numpy as np
import torch
from mmengine.logging import MMLogger
from numpy.lib import format as npy_format

from mmbal.registry import TRANSFORMS
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

_HASH_LOCK = threading.Lock()
_CONTENT_HASHES: dict[tuple, str] = {}


def file_content_hash(path: str) -> str:
    """sha1 of a file's bytes, memoised per process on (real path, size, mtime_ns).

    A file rewritten in place gets a new size or mtime and is hashed again.
    """
    stat = os.stat(path)
    memo_key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        cached = _CONTENT_HASHES.get(memo_key)
    if cached is not None:
        return cached
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _CONTENT_HASHES[memo_key] = value
    return value


def _public_params(obj: object) -> dict:
    """Type name and public, non-callable attributes of a transform: what shapes its output.

    Transforms here keep their constructor arguments as public attributes, so a
    new argument enters the cache key without further code.
    """
    params = {k: v for k, v in vars(obj).items()
              if not k.startswith('_') and not callable(v)}
    return {'type': type(obj).__name__, **params}


def _library_versions() -> dict:
    """Versions of the libraries that resample and transform: an upgrade starts a fresh cache."""
    import librosa
    import scipy
    return {'librosa': librosa.__version__, 'scipy': scipy.__version__,
            'torch': torch.__version__}


def array_checksum(array: np.ndarray) -> np.ndarray:
    """Two 64-bit sums over the bytes of ``array`` read as little-endian 8-byte words:
    of all words, and of the 4 KiB blocks' sums weighted by block number.

    Any change confined to one block changes the first sum unless its word changes add up
    to a multiple of 2**64; blocks moved around change the second. On a 1 MB spectrogram it
    costs ~0.05 ms where CRC-32 costs ~0.5 ms (the whole rest of a cache hit ~0.2 ms).
    """
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    if data.size % 8:
        data = np.concatenate([data, np.zeros(-data.size % 8, np.uint8)])
    words = data.view('<u8')
    full = words.size - words.size % 512
    sums = np.append(words[:full].reshape(-1, 512).sum(axis=1, dtype=np.uint64),
                     words[full:].sum(dtype=np.uint64))
    weights = np.arange(1, sums.size + 1, dtype=np.uint64)
    return np.array([sums.sum(dtype=np.uint64), (sums * weights).sum(dtype=np.uint64)])


_LOCAL_HEADER = struct.Struct('<4s22xHH')  # zip local file header: signature .. name/extra lengths


def _read_stored_npy(f: BinaryIO, info: zipfile.ZipInfo) -> np.ndarray:
    """The array of an uncompressed ``.npy`` member of the zip ``f``, read into its own buffer
    (no pickles: an object dtype is refused)."""
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f'member {name!r} is compressed; expected it stored')
    f.seek(info.header_offset)
    head = f.read(_LOCAL_HEADER.size)
    if len(head) != _LOCAL_HEADER.size or head[:4] != b'PK\x03\x04':
        raise ValueError(f'member {name!r} has no local file header')
    _, name_len, extra_len = _LOCAL_HEADER.unpack(head)
    f.seek(name_len + extra_len, os.SEEK_CUR)
    end = f.tell() + info.file_size
    version = npy_format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = npy_format.read_array_header_2_0(f)
    else:
        raise ValueError(f'member {name!r} is .npy format {version}; expected 1.0 or 2.0')
    if dtype.hasobject or fortran:
        raise ValueError(f'member {name!r} holds a {dtype} array (fortran_order={fortran}); '
                         'expected a C-ordered numeric array')
    array = np.empty(shape, dtype=dtype)
    if end - f.tell() != array.nbytes or f.readinto(array.reshape(-1).view(np.uint8)) \
            != array.nbytes:
        raise ValueError(f'member {name!r} does not hold the {array.nbytes} bytes its header '
                         f'declares ({shape}, {dtype})')
    return array


def read_cache_entry(path: str) -> np.ndarray:
    """The ``spec`` array of a cache entry after its :func:`array_checksum` is verified.

    An entry is an uncompressed ``.npz`` holding ``spec`` and ``checksum`` (so ``np.load``
    reads it too). Only the zip directory, the two headers and the array bytes are read:
    the array lands in its final buffer. Raises ``ValueError`` (or ``zipfile.BadZipFile``)
    saying what is wrong with an entry that is not a complete, unchanged one.
    """
    with open(path, 'rb') as f:
        with zipfile.ZipFile(f) as archive:  # the central directory only
            members = {info.filename: info for info in archive.infolist()}
        missing = [m for m in ('spec.npy', 'checksum.npy') if m not in members]
        if missing:
            raise ValueError(f'members {missing} are missing (has {sorted(members)})')
        spec = _read_stored_npy(f, members['spec.npy'])
        stored = _read_stored_npy(f, members['checksum.npy'])
    if not np.array_equal(stored, array_checksum(spec)):
        raise ValueError('checksum mismatch: the stored array differs from the one written')
    return spec


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
    never read a partial file. Each entry also stores the :func:`array_checksum` of the
    array (cheaper than the zip's CRC-32, which the fast reader skips), checked on every
    read: an entry that is truncated or corrupt (e.g. bytes changed on disk) is logged as
    a warning naming the file, recomputed and overwritten. Waveform transforms
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
        self.cache_hits = 0
        self.cache_misses = 0

    def cache_key(self, results: dict) -> str:
        """Hex sha1 naming the cache entry of this sample."""
        parts: dict[str, Any] = {
            'version': self.CACHE_VERSION,
            'audio_sha1': file_content_hash(results['audio_path']),
            'load': _public_params(self.loader),
            'waveform_transforms': [_public_params(t) for t in self.waveform_transforms],
            'spec': _public_params(self.spec),
            'libraries': _library_versions(),
        }
        if self.waveform_transforms:
            parts['sample_idx'] = int(results['sample_idx'])
        blob = json.dumps(parts, sort_keys=True, default=repr)
        return hashlib.sha1(blob.encode()).hexdigest()

    def sub_transforms(self) -> list:
        """The loader, the waveform transforms and the spectrogram transform, in order."""
        return [self.loader, *self.waveform_transforms, self.spec]

    def _cache_path(self, key: str) -> str:
        return os.path.join(self.cache_dir, key[:2], f'{key}.npz')

    @staticmethod
    def _atomic_save(path: str, array: np.ndarray) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.npz')
        try:
            with os.fdopen(fd, 'wb') as f:
                np.savez(f, spec=array, checksum=array_checksum(array))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @staticmethod
    def _read_entry(path: str) -> np.ndarray | None:
        """The array of a cache entry, or None (with a warning) when it is unreadable or its
        checksum fails, so corrupt bytes are never returned."""
        try:
            return read_cache_entry(path)
        except Exception as err:  # truncated, checksum mismatch, not an archive, no 'spec'
            MMLogger.get_current_instance().warning(
                f'LoadAudioSpectrogram: cache entry {path!r} is unreadable or corrupt '
                f'({type(err).__name__}: {err}); recomputing and overwriting it')
            return None

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
            spec = self._read_entry(path)
            if spec is not None:
                self.cache_hits += 1
                results[self._out_key] = spec
                results['audio_sample_rate'] = self.loader.sample_rate
                return results
        self.cache_misses += 1
        results = self._compute(results)
        self._atomic_save(path, results[self._out_key])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(load={self.loader!r}, '
                f'waveform_transforms={self.waveform_transforms!r}, spec={self.spec!r}, '
                f'cache_dir={self.cache_dir!r})')


__all__ = ['Spectrogram', 'ScipySpectrogram', 'LoadAudioSpectrogram', 'file_content_hash',
           'array_checksum', 'read_cache_entry', 'PRESETS']
